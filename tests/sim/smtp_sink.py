"""A tiny line-based SMTP server that records what Butler sends (tests only).

    from smtp_sink import SmtpSink

    with SmtpSink() as sink:
        url = sink.url                      # smtp://127.0.0.1:<port>, give to Butler
        mails = sink.wait_for(count=1, timeout=10)
        mails[0]["mail_from"], mails[0]["rcpt_to"], mails[0]["subject"], mails[0]["data"]

Speaks just enough SMTP for libcurl: greeting, EHLO/HELO (no AUTH, no
STARTTLS), MAIL FROM, RCPT TO, DATA (dot-unstuffed), RSET, NOOP, QUIT. Addresses in
`sink.refuse` get 550 to their RCPT TO.
Python 3.11's smtpd is deprecated, hence socketserver. Standard library only.
"""

import email.header
import re
import socketserver
import threading
import time

_ADDRESS = re.compile(rb"<([^>]*)>")
MAX_LINE = 65536
MAX_DATA = 10 * 1024 * 1024


class _Handler(socketserver.StreamRequestHandler):
    def _reply(self, text):
        self.wfile.write(text.encode("ascii") + b"\r\n")
        self.wfile.flush()

    def handle(self):
        sink = self.server.sink
        mail_from, rcpt_to = None, []
        self._reply("220 smtp-sink ready")
        while True:
            line = self.rfile.readline(MAX_LINE)
            if not line:
                return
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                self._reply("250 smtp-sink" if verb == b"HELO" else "250-smtp-sink\r\n250 8BITMIME")
            elif verb == b"MAIL":
                found = _ADDRESS.search(line)
                mail_from, rcpt_to = (found.group(1).decode() if found else ""), []
                self._reply("250 OK")
            elif verb == b"RCPT":
                found = _ADDRESS.search(line)
                address = found.group(1).decode() if found else ""
                if address in sink.refuse:  # RFC 5321 4.2.3: 550 mailbox unavailable
                    self._reply("550 5.1.1 mailbox unavailable")
                    continue
                rcpt_to.append(address)
                self._reply("250 OK")
            elif verb == b"DATA" and not rcpt_to:
                self._reply("554 no valid recipients")
            elif verb == b"DATA":
                self._reply("354 end with <CRLF>.<CRLF>")
                data = b""
                while True:
                    chunk = self.rfile.readline(MAX_LINE)
                    if not chunk or chunk in (b".\r\n", b".\n"):
                        break
                    if chunk.startswith(b".."):
                        chunk = chunk[1:]
                    if len(data) < MAX_DATA:
                        data += chunk
                sink._record(mail_from, rcpt_to, data)
                self._reply("250 OK queued")
            elif verb == b"RSET":
                mail_from, rcpt_to = None, []
                self._reply("250 OK")
            elif verb == b"NOOP":
                self._reply("250 OK")
            elif verb == b"QUIT":
                self._reply("221 bye")
                return
            else:
                self._reply("502 not implemented")


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def _subject(data):
    text = data.decode("utf-8", "replace")
    headers = text.split("\r\n\r\n", 1)[0].replace("\r\n ", " ").replace("\r\n\t", " ")
    for line in headers.split("\r\n"):
        if line.lower().startswith("subject:"):
            value = line.split(":", 1)[1].strip()
            return str(email.header.make_header(email.header.decode_header(value)))
    return None


class SmtpSink:
    def __init__(self, host="127.0.0.1", refuse=()):
        """refuse: addresses whose RCPT TO is answered 550 (the others are accepted)."""
        self.refuse = set(refuse)
        self._lock = threading.Condition()
        self._mails = []
        self._server = _Server((host, 0), _Handler)
        self._server.sink = self
        self.host, self.port = self._server.server_address[:2]
        self.url = f"smtp://{self.host}:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def _record(self, mail_from, rcpt_to, data):
        with self._lock:
            self._mails.append({"mail_from": mail_from, "rcpt_to": list(rcpt_to), "data": data,
                                "subject": _subject(data), "t": time.monotonic()})
            self._lock.notify_all()

    @property
    def mails(self):
        with self._lock:
            return list(self._mails)

    def reset(self):
        with self._lock:
            self._mails.clear()

    def wait_for(self, count=1, timeout=10.0):
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self._mails) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"smtp sink: {len(self._mails)} of {count} mail(s) "
                                         f"after {timeout}s")
                self._lock.wait(remaining)
            return list(self._mails)

    def stop(self):
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
