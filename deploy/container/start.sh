#!/bin/sh
# The image's entry point, run under tini (PID 1, which forwards SIGTERM to this process group).
# Warm-up runs in the background: it waits for each model's workers, sends the samples its archive
# carries and records that for the readiness probe. TorchServe then replaces this shell and runs in
# the foreground: the container's main process. Arguments go to torchserve (e.g. --model-store).
set -eu
# Files the server writes (logs, a key file if tokens are turned on) are private to its user.
umask 077
# Refuse to start on a config that changes the image's security settings (a KServe bucket's), or an
# archive whose sha256 is not the one pinned by `make archive` / the InferenceService (client/trust.py).
python -m client.trust --baked "${KIT_BAKED_CONFIG:-/srv/torchserve/config.properties}" "$@"
# In a subshell, so the warm-up is handed to PID 1 (tini), which reaps it when it ends; the
# torchserve launcher would leave it a zombie.
(python -m client.health warmup --timeout "${KIT_WARMUP_TIMEOUT:-600}" &)
exec torchserve --foreground --ncs "$@"
