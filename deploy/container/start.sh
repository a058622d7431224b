#!/bin/sh
# The image's entry point, run under tini (PID 1, which sends SIGTERM to this process group).
# Warm-up runs in the background: it waits for each model's workers, sends the samples its archive
# carries and records that for the readiness probe. Arguments go to torchserve (e.g. --model-store).
#
# SIGTERM drains before it stops (README: Updates without downtime): TorchServe runs in its own
# session, so the group's SIGTERM reaches this shell and not the server. The shell then marks the
# server not ready (the readiness probe fails at once), waits KIT_DRAIN_DELAY s (5) for load
# balancers to stop sending, waits until every model's queue has been empty for a second, at most
# KIT_DRAIN_GRACE s (20) in all, and only then stops TorchServe. Keep the pod's
# terminationGracePeriodSeconds (30) above KIT_DRAIN_GRACE.
set -eu
# Files the server writes (logs, a key file if tokens are turned on) are private to its user.
umask 077
# Refuse to start on a config that changes the image's security settings (a KServe bucket's), or an
# archive whose sha256 is not the one pinned by `make archive` / the InferenceService (client/trust.py).
python -m client.trust --baked "${KIT_BAKED_CONFIG:-/srv/torchserve/config.properties}" "$@"
# In a subshell, so the warm-up is handed to PID 1 (tini), which reaps it when it ends; the
# torchserve launcher would leave it a zombie.
(python -m client.health warmup --timeout "${KIT_WARMUP_TIMEOUT:-600}" &)
setsid torchserve --foreground --ncs "$@" &
server=$!

stop() {
    trap - TERM INT
    python -m client.health drain --delay "${KIT_DRAIN_DELAY:-5}" --timeout "${KIT_DRAIN_GRACE:-20}" || true
    torchserve --stop >/dev/null || kill -TERM "$server" 2>/dev/null || true
    wait "$server" || true
    exit 143
}
trap stop TERM INT
# wait returns when a trapped signal arrives (then stop runs) or when the server exits by itself.
status=0
wait "$server" || status=$?
exit "$status"
