#!/usr/bin/python3
"""24-systemd-execstart: the systemd unit as this build writes it
(build/broker/latchkey-broker.service, next to the binary): no placeholder
left, the sandboxing and restart settings in place, `systemd-analyze verify`
clean (when available), `cmake --install` putting the unit and the sample
config where ExecStart looks for them, and ExecStart itself run as written,
with only the installed binary, config and registry paths replaced by the
built binary, a copy of the sample config and a temporary registry: the
broker must serve /healthz, reload on the unit's ExecReload command and
stop cleanly on SIGTERM."""

import http.client
import json
import os
import re
import shlex
import shutil
import subprocess

import lkharness as h

HERE = os.path.dirname(os.path.abspath(__file__))
SAMPLE_CONF = os.path.join(HERE, "..", "..", "broker", "latchkey-broker.conf")

REQUIRED = {
    "User": "latchkey",
    "StateDirectory": "latchkey",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "NoNewPrivileges": "yes",
    "CapabilityBoundingSet": "",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "Restart": "on-failure",
    "ExecReload": "/bin/kill -HUP $MAINPID",
}


def get(port, path, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=h.T(5))
    try:
        conn.request("GET", path, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def parse_unit(text):
    """{section: {key: [values]}}; systemd's syntax without continuations."""
    out, section = {}, None
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = out.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        section.setdefault(key.strip(), []).append(value.strip())
    return out


def setup(env):
    env.unit_path = os.path.join(os.path.dirname(h.BROKER), "latchkey-broker.service")
    h.check(os.path.isfile(env.unit_path), "the build wrote %s" % env.unit_path)
    with open(env.unit_path) as f:
        env.unit_text = f.read()
    env.unit = parse_unit(env.unit_text)
    env.exec_start = shlex.split(env.unit["Service"]["ExecStart"][0])
    env.reg = env.registry("state.db")
    env.key = env.reg.create_key("ws_unit")


def arg_after(argv, flag):
    h.check(flag in argv, "ExecStart passes %s: %r" % (flag, argv))
    return argv[argv.index(flag) + 1]


async def test_unit_settings(env):
    left = re.findall(r"@[A-Za-z_]+@", env.unit_text)
    h.eq(left, [], "configure_file placeholders left")
    svc = env.unit["Service"]
    for key, want in REQUIRED.items():
        h.eq(svc.get(key), [want], "[Service] %s" % key)
    nofile = svc.get("LimitNOFILE", ["0"])[0]
    h.check(nofile.isdigit() and int(nofile) >= 65536, "LimitNOFILE is high: %r" % nofile)
    h.eq(env.unit["Install"].get("WantedBy"), ["multi-user.target"], "WantedBy")
    argv = env.exec_start
    h.check(os.path.isabs(argv[0]) and argv[0].endswith("/bin/latchkey-broker"),
            "ExecStart runs the installed binary: %r" % argv[0])
    conf = arg_after(argv, "--config")
    h.check(os.path.isabs(conf) and conf.endswith("/latchkey/latchkey-broker.conf"),
            "ExecStart reads the installed config: %r" % conf)
    h.eq(arg_after(argv, "--db"), "/var/lib/latchkey/latchkey.db",
         "the registry lives in the StateDirectory")


async def test_systemd_analyze_verify(env):
    tool = shutil.which("systemd-analyze")
    if not tool:
        print("     systemd-analyze not installed; skipped")
        return
    d = env.path("unit")
    os.makedirs(d, exist_ok=True)
    copy = os.path.join(d, "latchkey-broker.service")
    with open(copy, "w") as f:
        f.write(env.unit_text.replace(env.exec_start[0], h.BROKER))
    p = subprocess.run([tool, "verify", "--man=no", copy], capture_output=True, text=True,
                       timeout=h.T(60))
    h.eq((p.returncode, p.stderr.strip(), p.stdout.strip()), (0, "", ""),
         "systemd-analyze verify")


async def test_cmake_install(env):
    cmake = shutil.which("cmake")
    if not cmake:
        print("     cmake not on PATH; skipped")
        return
    broker_build = os.path.dirname(h.BROKER)
    dest = env.path("destdir")
    p = subprocess.run([cmake, "--install", broker_build], capture_output=True, text=True,
                       env=dict(os.environ, DESTDIR=dest), timeout=h.T(120))
    h.eq(p.returncode, 0, "cmake --install (%s)" % p.stderr.strip()[-400:])
    bindir = os.path.dirname(env.exec_start[0])
    prefix = os.path.dirname(bindir)
    unit = dest + os.path.join(prefix, "lib/systemd/system/latchkey-broker.service")
    h.check(os.path.isfile(unit), "unit installed at %s" % unit)
    with open(unit) as f:
        h.eq(f.read(), env.unit_text, "installed unit equals the built one")
    h.check(os.access(dest + env.exec_start[0], os.X_OK), "ExecStart's binary is installed")
    conf = dest + arg_after(env.exec_start, "--config")
    h.check(os.path.isfile(conf), "ExecStart's config is installed (%s)" % conf)


async def test_exec_start_runs(env):
    with open(SAMPLE_CONF) as f:
        conf = f.read()
    h.check("\nlisten " in conf, "the sample config sets listen")
    conf = "\n".join("listen 127.0.0.1:0" if l.startswith("listen ") else l
                     for l in conf.splitlines()) + "\n"
    conf_path = env.path("latchkey-broker.conf")
    with open(conf_path, "w") as f:
        f.write(conf)
    argv = list(env.exec_start)
    argv[0] = h.BROKER
    argv[argv.index("--config") + 1] = conf_path
    argv[argv.index("--db") + 1] = env.reg.db
    b = h.Broker(env, env.reg.db, args=argv[1:], log_level=None, with_db=False,
                 with_listen=False).start()
    status, body = get(b.port, "/healthz")
    h.eq((status, json.loads(body)), (200, {"status": "ok"}), "/healthz of the unit's broker")
    status, body = get(b.port, "/v1/key", {"Authorization": "Bearer " + env.key.raw})
    h.eq((status, json.loads(body)["workspace"]), (200, "ws_unit"), "API on the unit's broker")

    reload_cmd = [a.replace("$MAINPID", str(b.proc.pid))
                  for a in shlex.split(env.unit["Service"]["ExecReload"][0])]
    mark = len(b.lines)
    p = subprocess.run(reload_cmd, capture_output=True, text=True, timeout=h.T(10))
    h.eq(p.returncode, 0, "ExecReload command (%s)" % p.stderr.strip())
    b.wait_log(lambda o: o.get("msg") == "reloaded", h.T(5))
    h.check(len(b.lines) > mark, "reload logged")
    h.eq(get(b.port, "/healthz")[0], 200, "serving after the reload")
    rc, took = b.signal_and_wait()
    h.eq(rc, 0, "exit code on SIGTERM (the unit's stop)")
    h.check(took < 2.5, "stopped within the SPEC's 2 s (%.2fs)" % took)


h.main(setup, [test_unit_settings, test_systemd_analyze_verify, test_cmake_install,
               test_exec_start_runs])
