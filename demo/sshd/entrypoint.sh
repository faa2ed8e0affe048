#!/bin/sh
# Host keys are generated here, per container, never baked into the image. The authorized key is
# given at run time: DEMO_AUTHORIZED_KEYS (one or more public keys) and/or a mounted file
# /run/demo/authorized_keys. Without either, sshd still starts (the port can be knocked open and
# its banner read), but nobody can log in.
set -eu
ssh-keygen -A >/dev/null
mkdir -p /etc/ssh/authorized_keys
keys=/etc/ssh/authorized_keys/demo
: >"$keys"
if [ -n "${DEMO_AUTHORIZED_KEYS:-}" ]; then printf '%s\n' "$DEMO_AUTHORIZED_KEYS" >>"$keys"; fi
if [ -r /run/demo/authorized_keys ]; then cat /run/demo/authorized_keys >>"$keys"; fi
chmod 0644 "$keys"
if [ -s "$keys" ]; then
  echo "demo-sshd: $(grep -c . "$keys") authorized key(s) for user demo"
else
  echo "demo-sshd: no authorized key given (set DEMO_AUTHORIZED_KEYS); nobody can log in" >&2
fi
for f in /etc/ssh/ssh_host_*_key.pub; do ssh-keygen -lf "$f"; done
exec /usr/sbin/sshd -D -e
