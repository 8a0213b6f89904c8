/* Butler's status page: reads GET /v4/status every 5 s and shows it.
 * Every value from Butler (task names, event messages, errors) goes into the
 * page as text (textContent), never as HTML. No framework, no external file. */
'use strict';

const REFRESH_MS = 5000;
const TOKEN_KEY = 'butler.statusToken';
let lastOk = 0;       /* Date.now() of the last good answer */
let timer = null;
let qmcBase = '';     /* https://<qrs host> when qrs.url gives one */
let cloudUrls = {};   /* Qlik Cloud tenant name -> its https URL */

const $ = (id) => document.getElementById(id);

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function localTime(iso) {
  if (!iso) return '–';
  const d = new Date(iso);
  return isNaN(d.getTime()) ? String(iso) : d.toLocaleString();
}

function link(text, href) {
  if (!href) return el('span', text);
  const a = el('a', text);
  a.href = href;
  a.target = '_blank';
  a.rel = 'noopener noreferrer';
  return a;
}

function taskLink(name, id) {
  return link(name || id || '–', qmcBase && id ? qmcBase + '/qmc/tasks' : '');
}

function appLink(name, id) {
  return link(name || id || '–', qmcBase && id ? qmcBase + '/sense/app/' + encodeURIComponent(id) : '');
}

function cloudAppLink(name, id, tenant) {
  const base = Object.prototype.hasOwnProperty.call(cloudUrls, tenant) ? cloudUrls[tenant] : '';
  return link(name || id || '–', base && id ? base + '/sense/app/' + encodeURIComponent(id) : '');
}

function tag(text, kind) { return el('span', text, 'tag ' + kind); }

/* Replace a tbody's rows in one step: no empty frame, no flicker. */
function fillRows(tbodyId, items, columns, countId) {
  const rows = [];
  for (const item of items) {
    const tr = document.createElement('tr');
    for (const cell of columns(item)) {
      const td = document.createElement('td');
      if (cell instanceof Node) td.appendChild(cell);
      else td.textContent = cell === undefined || cell === null ? '' : String(cell);
      if (cell && cell.isTime) td.className = 'time';
      tr.appendChild(td);
    }
    rows.push(tr);
  }
  if (rows.length === 0) {
    const tr = document.createElement('tr');
    const td = el('td', 'None yet', 'empty');
    td.colSpan = 8;
    tr.appendChild(td);
    rows.push(tr);
  }
  $(tbodyId).replaceChildren(...rows);
  if (countId) $(countId).textContent = items.length ? '(' + items.length + ')' : '';
}

function timeCell(iso) {
  const span = el('span', localTime(iso));
  span.isTime = true;
  span.title = iso || '';
  return span;
}

function fillList(dlId, pairs) {
  const nodes = [];
  for (const [name, value] of pairs) {
    nodes.push(el('dt', name));
    nodes.push(value instanceof Node ? wrap('dd', value) : el('dd', value));
  }
  if (nodes.length === 0) { nodes.push(el('dt', '–')); nodes.push(el('dd', 'nothing yet')); }
  $(dlId).replaceChildren(...nodes);
}

function wrap(tagName, child) { const n = document.createElement(tagName); n.appendChild(child); return n; }

function chip(name, kind, text) {
  const div = el('div', null, 'chip ' + kind);
  div.appendChild(el('b', name));
  div.appendChild(el('span', text));
  return div;
}

function since(iso) { return iso ? ' since ' + localTime(iso) : ''; }

function renderHealth(s) {
  const chips = [];
  const b = s.broker || {};
  chips.push(chip('MQTT broker', b.state === 'connected' ? 'ok' : 'bad',
    b.state + since(b.since) + (b.state !== 'connected' && b.lastError ? ': ' + b.lastError : '')));
  const q = s.qrs || {};
  const qKind = { ok: 'ok', failing: 'bad', unknown: 'warn', off: 'off' }[q.state] || 'warn';
  const qText = q.state === 'off' ? 'not configured' :
    q.state === 'unknown' ? 'no call yet' :
    q.state + since(q.since) + (q.state === 'failing' && q.lastError ? ': ' + q.lastError : '');
  chips.push(chip('QRS', qKind, qText));
  const e = s.engine || {};
  chips.push(chip('Engine', e.state === 'configured' ? 'ok' : 'off',
    e.state === 'configured' ? 'configured' : 'not configured'));
  const cloud = Array.isArray(s.qlikCloud) ? s.qlikCloud : [];
  chips.push(chip('Qlik Cloud', cloud.length ? 'ok' : 'off',
    cloud.length ? cloud.map((t) => t.name).join(', ') : 'not configured'));
  $('health').replaceChildren(...chips);
}

function outcomeTag(status) {
  const kind = status === 'started' ? 'ok' : status === 'partial' ? 'warn' : 'bad';
  return tag(status || 'unknown', kind);
}

function renderTasks(list) {
  fillRows('tasks', list, (entry) => {
    const p = entry.payload && typeof entry.payload === 'object' ? entry.payload : {};
    const tasks = document.createElement('div');
    const started = Array.isArray(p.started) ? p.started : [];
    started.forEach((t, i) => {
      if (i) tasks.appendChild(document.createTextNode(', '));
      tasks.appendChild(taskLink(t.taskName, t.taskId));
    });
    for (const key of Object.keys(p)) {
      if (key !== 'started' && Array.isArray(p[key]) && p[key].length) {
        const names = p[key].map((t) => (t && (t.taskName || t.taskId || t.reason)) || JSON.stringify(t));
        tasks.appendChild(el('div', key + ': ' + names.join(', '), 'muted'));
      }
    }
    return [timeCell(entry.at), p.requestId || '', outcomeTag(p.status), tasks];
  }, 'tasks-count');
}

function eventKind(topic) {
  const at = topic.indexOf('/events/');
  const parts = (at >= 0 ? topic.slice(at + 8) : topic).split('/');
  return parts.slice(0, 2).join(' ');
}

function renderEvents(list) {
  fillRows('events', list, (entry) => {
    const p = entry.payload && typeof entry.payload === 'object' ? entry.payload : {};
    const kind = eventKind(entry.topic);
    const bad = /fail|abort|error|expired/.test(kind);
    const subject = p.taskId || p.taskName ? taskLink(p.taskName, p.taskId) :
      entry.topic.indexOf('/events/cloud/') >= 0 ? cloudAppLink(p.appName, p.appId, p.tenant) :
      appLink(p.appName, p.appId);
    return [timeCell(entry.at), tag(kind, bad ? 'bad' : 'ok'), subject, p.host || '', p.message || ''];
  }, 'events-count');
}

function renderFinished(list) {
  fillRows('finished', list, (entry) => {
    const p = entry.payload && typeof entry.payload === 'object' ? entry.payload : {};
    const status = String(p.status || p.outcome || '');
    return [timeCell(entry.at), taskLink(p.taskName, p.taskId),
      tag(status || 'unknown', /success|ok|finished/i.test(status) ? 'ok' : 'bad')];
  }, 'finished-count');
}

function renderDead(list) {
  fillRows('dead', list, (entry) => {
    const p = entry.payload && typeof entry.payload === 'object' ? entry.payload : {};
    return [timeCell(entry.at), p.topic || entry.topic, p.error || '', p.attempts === undefined ? '' : p.attempts];
  }, 'dead-count');
}

function renderSchedules(list) {
  fillRows('schedules', list, (s) => [
    s.name || s.id, s.cron + (s.timezone ? ' (' + s.timezone + ')' : ''),
    tag(s.state, s.state === 'started' ? 'ok' : 'off'), timeCell(s.next)]);
}

function scalarPairs(prefix, obj) {
  const pairs = [];
  if (!obj || typeof obj !== 'object') return pairs;
  for (const [key, value] of Object.entries(obj)) {
    if (value === null || typeof value !== 'object') pairs.push([prefix + key, value === null ? '–' : value]);
  }
  return pairs;
}

function renderSide(s) {
  const lic = s.license || {};
  fillList('license', scalarPairs('server ', lic.server).concat(scalarPairs('access ', lic.access)));
  const u = s.activeUsers;
  const items = u && Array.isArray(u.users) ? u.users.map((name) => el('li', name)) :
    [el('li', u ? 'none' : 'off (udp.proxy_listen is empty)', 'muted')];
  if (u && items.length === 0) items.push(el('li', 'none', 'muted'));
  $('users').replaceChildren(...items);
  $('users-count').textContent = u ? '(' + u.count + ')' : '';
  const sp = s.spool || {}, qu = s.queues || {};
  fillList('spool', [['unfinished work', sp.pending], ['spool live bytes', sp.liveBytes],
    ['spool file bytes', sp.fileBytes], ['worker queue', qu.workerQueued], ['workers busy', qu.workerBusy]]);
  const config = JSON.stringify(s.config || {}, null, 2);
  if ($('config').textContent !== config) $('config').textContent = config;
}

function render(s) {
  try {
    const u = new URL(s.qrsUrl);
    qmcBase = s.qrsUrl && /^https?:$/.test(u.protocol) ? 'https://' + u.hostname : '';
  } catch (e) { qmcBase = ''; }
  cloudUrls = {};
  for (const t of Array.isArray(s.qlikCloud) ? s.qlikCloud : []) {
    if (t && typeof t.url === 'string' && /^https:\/\//.test(t.url)) cloudUrls[t.name] = t.url.replace(/\/+$/, '');
  }
  $('version').textContent = s.version ? 'v' + s.version : '';
  $('started').textContent = localTime(s.startedAt);
  $('updated').textContent = new Date().toLocaleTimeString();
  renderHealth(s);
  const r = s.recent || {};
  renderTasks(r.taskResults || []);
  renderEvents(r.events || []);
  renderFinished(r.finished || []);
  renderDead(r.deadLetters || []);
  renderSchedules(s.schedules || []);
  renderSide(s);
  $('content').hidden = false;
}

function showStale(text) {
  const box = $('stale');
  box.textContent = text;
  box.hidden = false;
}

function askToken(wrong) {
  $('content').hidden = true;
  $('token-form').hidden = false;
  const error = $('token-error');
  error.hidden = !wrong;
  error.textContent = wrong ? 'That token was refused: check it and try again.' : '';
  $('token').focus();
}

async function refresh() {
  clearTimeout(timer);
  const token = sessionStorage.getItem(TOKEN_KEY);
  const headers = token ? { Authorization: 'Bearer ' + token } : {};
  try {
    const response = await fetch('/v4/status', { headers, cache: 'no-store', credentials: 'omit' });
    if (response.status === 401) {
      if (token) sessionStorage.removeItem(TOKEN_KEY);
      askToken(Boolean(token));
      return; /* no refresh until a token is given */
    }
    if (!response.ok) throw new Error('HTTP ' + response.status);
    const status = await response.json();
    $('token-form').hidden = true;
    $('stale').hidden = true;
    lastOk = Date.now();
    render(status);
  } catch (e) {
    showStale('Butler is not answering' + (lastOk ? ' since ' + new Date(lastOk).toLocaleTimeString() +
      ': the figures below are from then' : '') + ' (' + e.message + ').');
  }
  timer = setTimeout(refresh, REFRESH_MS);
}

document.addEventListener('DOMContentLoaded', () => {
  $('token-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const value = $('token').value.trim();
    if (!value) return;
    sessionStorage.setItem(TOKEN_KEY, value);
    $('token').value = '';
    $('token-form').hidden = true;
    refresh();
  });
  refresh();
});
