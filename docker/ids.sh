# Sourced by docker/build.sh and scripts/up.sh: the user the containers run as, exported for docker-compose.yml.
# It is the invoking user, so that files written to ./results belong to them; when that is root, 1000:1000
# instead, because no chorus container runs as root. CHORUS_UID/CHORUS_GID override both.
if [[ -z "${CHORUS_UID:-}" ]]; then
    CHORUS_UID="$(id -u)"; CHORUS_GID="${CHORUS_GID:-$(id -g)}"
    if [[ "$CHORUS_UID" = 0 ]]; then CHORUS_UID=1000; CHORUS_GID=1000; fi
fi
CHORUS_GID="${CHORUS_GID:-$CHORUS_UID}"
export CHORUS_UID CHORUS_GID
