"""Runtime knobs. Each one pins an open point of sense-interfaces.md section 6
(or a documented QRS variant) so tests can choose the behaviour they assert on."""

AUTH_MODES = ("tls-reject", "http-403", "http-401")

# Knob name -> default. _check() validates by the default's type or _CHOICES.
DEFAULTS = {
    # 4.2 step 1: how a missing client certificate is rejected.
    "auth_mode": "tls-reject",
    # 4.2 step 4: status of the XSRF failure (the body text never changes).
    "xrf_failure_status": 403,
    # 4.2 step 5: missing X-Qlik-User: 0 = accept as INTERNAL\sa_api, else this status.
    "xqu_missing_status": 0,
    "xqu_malformed_status": 400,
    # null = everyone; else a list of "DIR\\user" strings, others get 403.
    "allowed_users": None,
    # 4.4: malformed (non-GUID) id in a path.
    "malformed_id_status": 400,
    # 4.4: async start of a disabled task (2xx = no run, anything else = that error).
    "disabled_start_status": 204,
    "sync_start_status": 201,
    # 7.2: the sync start's body: {"value": "<guid>"} ("object") or a bare JSON string.
    "sync_start_value_shape": "object",
    # "started": the sync start answers once the run is Started; "immediate": at once.
    "sync_start_wait": "started",
    # Every sync start answers the zero GUID (no scheduler available).
    "no_scheduler": False,
    # 4.6
    "cp_filter_semantics": "independent",
    "strict_filter": True,
    # 4.4: /reloadtask/{id} also serves other task types (Butler relies on it).
    "reloadtask_serves_all_types": True,
    # 4.4 script-log APIs: "ok" | "404" | "400"; "object" | "bare".
    "deprecated_scriptlog_api": "ok",
    "scriptlogfile_value_shape": "object",
    # 4.7 UDP coupling.
    "udp_success_single_slash": False,
    "udp_distribute_also_success": False,
    "udp_missing_property_render": "empty",
    # "caller": the X-Qlik-User of the start call; "scheduler": INTERNAL\sa_scheduler.
    "udp_user": "caller",
}

_CHOICES = {
    "auth_mode": AUTH_MODES,
    "sync_start_wait": ("started", "immediate"),
    "cp_filter_semantics": ("independent", "correlated"),
    "deprecated_scriptlog_api": ("ok", "404", "400"),
    "scriptlogfile_value_shape": ("object", "bare"),
    "sync_start_value_shape": ("object", "bare"),
    "udp_missing_property_render": ("empty", "(null)"),
    "udp_user": ("caller", "scheduler"),
}


class ConfigError(ValueError):
    pass


def _check(name, value):
    default = DEFAULTS[name]
    if name in _CHOICES:
        if value not in _CHOICES[name]:
            raise ConfigError(f"{name}: expected one of {list(_CHOICES[name])}")
    elif name == "allowed_users":
        if value is not None and not (isinstance(value, list) and all(isinstance(u, str) for u in value)):
            raise ConfigError("allowed_users: expected null or a list of 'DIR\\\\user' strings")
    elif isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{name}: expected a boolean")
    elif isinstance(default, int):
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(f"{name}: expected an integer")
        if name != "xqu_missing_status" or value != 0:
            if not 100 <= value <= 599:
                raise ConfigError(f"{name}: expected an HTTP status")


def fresh():
    return dict(DEFAULTS)


def apply(config, changes):
    """Validate all changes first, then apply them, so a bad request changes nothing."""
    if not isinstance(changes, dict):
        raise ConfigError("expected a JSON object of knobs")
    for name, value in changes.items():
        if name not in DEFAULTS:
            raise ConfigError(f"unknown knob {name!r}; known: {sorted(DEFAULTS)}")
        _check(name, value)
    config.update(changes)
