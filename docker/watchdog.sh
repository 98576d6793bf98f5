#!/bin/sh
# Compose watchdog:  docker/watchdog.sh SERVICE...   (docker-compose.yml runs it with /var/run/docker.sock mounted)
# Restarts this compose project's containers of these services that died from SIGKILL without being asked to stop:
# `docker kill`, the kernel's OOM killer. Docker 20.10 counts a `docker kill` as a manual stop, so no restart policy
# brings such a container back. A container that compose or `docker stop` stops got SIGTERM first: left alone.
# It reads Docker's event stream; python because the image has it and no docker CLI.
exec python - "$@" <<'PY'
import http.client, json, socket, sys, time, urllib.parse

SOCKET = "/var/run/docker.sock"
services = sys.argv[1:]


class Conn(http.client.HTTPConnection):
    def __init__(self, timeout=None):
        super().__init__("docker", timeout=timeout)

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(SOCKET)


def call(method, path):
    c = Conn(timeout=30)
    c.request(method, path)
    r = c.getresponse()
    body = r.read()
    return r.status, json.loads(body) if body.strip() else None


def say(text):
    print(f"watchdog: {text}", flush=True)


_, me = call("GET", f"/containers/{socket.gethostname()}/json")
project = me["Config"]["Labels"]["com.docker.compose.project"]
# one label filter: this project; the service is checked per event (Docker ANDs label filters)
query = urllib.parse.urlencode({"filters": json.dumps({"type": ["container"],
                                                       "label": [f"com.docker.compose.project={project}"],
                                                       "event": ["kill", "die", "destroy"]})})
say(f"restarting SIGKILLed {', '.join(services)} containers of project {project}")
stopping = {}  # container id -> when it got a polite signal (a stop): its death is wanted
while True:
    c = Conn()
    c.request("GET", f"/events?{query}")
    stream = c.getresponse()
    for line in stream:
        event = json.loads(line)
        cid, action = event.get("id", ""), event.get("Action") or event.get("status")
        attrs = event.get("Actor", {}).get("Attributes", {})
        if attrs.get("com.docker.compose.service") not in services:
            continue
        if action == "kill" and attrs.get("signal") not in ("9", "SIGKILL", "KILL"):
            stopping[cid] = time.time()
        elif action == "die":
            polite = time.time() - stopping.pop(cid, 0) < 600
            if attrs.get("exitCode") == "137" and not polite:
                time.sleep(2)  # let the restart policy act first, if it will
                status, info = call("GET", f"/containers/{cid}/json")
                if status == 200 and not info["State"]["Running"] and not info["State"]["Restarting"]:
                    status, _ = call("POST", f"/containers/{cid}/start")
                    say(f"restarted {info['Name'].lstrip('/')} (killed): HTTP {status}")
        elif action == "destroy":
            stopping.pop(cid, None)
    say("event stream ended; reconnecting")
    time.sleep(1)
PY
