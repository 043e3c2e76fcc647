#!/usr/bin/env bash
# Asterisk 22 for machines without Docker: Debian sid's `asterisk` package in a chroot.
#
#   asterisk-dev/chroot.sh build      create (or reuse) the cached chroot
#   asterisk-dev/chroot.sh start      copy our config in, start Asterisk, wait for ARI
#   asterisk-dev/chroot.sh stop       stop Asterisk (and unmount /proc)
#   asterisk-dev/chroot.sh restart
#   asterisk-dev/chroot.sh status     exit 0 when ARI answers
#   asterisk-dev/chroot.sh cli "..."  run an Asterisk CLI command
#   asterisk-dev/chroot.sh dialplan FILE   install FILE as extensions_centralino.conf and reload
#
# CENTRALINO_DIALPLAN=FILE makes `start` install FILE instead of dialplan/extensions_centralino.conf
# (the tests route their own numbers this way, and keep them across restarts).
# The chroot lives outside the clone (default /var/cache/centralino/asterisk-sid) so that every
# clone and every CI run on this machine reuses it; it is rebuilt when missing or when the
# package list below changes. The chroot shares the host network: ARI answers on 127.0.0.1:8088.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
ROOT=${CENTRALINO_ASTERISK_ROOT:-/var/cache/centralino/asterisk-sid}
MIRROR=${CENTRALINO_DEBIAN_MIRROR:-http://deb.debian.org/debian}
ARI_URL=${CENTRALINO_ARI_URL:-http://127.0.0.1:8088}
ARI_AUTH=${CENTRALINO_ARI_AUTH:-centralino:centralino-dev}
PACKAGES="asterisk asterisk-core-sounds-it-wav asterisk-core-sounds-en-wav asterisk-moh-opsound-wav"
# Bump when the recipe changes so that cached chroots are rebuilt.
RECIPE="1 $PACKAGES"

log() { printf 'asterisk-dev: %s\n' "$*" >&2; }
need_root() { [ "$(id -u)" = 0 ] || { log "must run as root (debootstrap and chroot need it)"; exit 1; }; }

build() {
  need_root
  if [ -f "$ROOT/.centralino-recipe" ] && [ "$(cat "$ROOT/.centralino-recipe")" = "$RECIPE" ]; then
    return 0
  fi
  command -v debootstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >&2
  log "building the Asterisk chroot in $ROOT (about a minute)"
  local tmp="$ROOT.partial"
  umount_proc "$tmp"
  rm -rf "$tmp"
  mkdir -p "$(dirname "$ROOT")"
  debootstrap --variant=minbase sid "$tmp" "$MIRROR" >&2
  cp /etc/resolv.conf "$tmp/etc/resolv.conf"
  # sid's Release file on this mirror may be expired; the packages themselves are still signed.
  chroot "$tmp" apt-get -q -o Acquire::Check-Valid-Until=false update >&2
  chroot "$tmp" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $PACKAGES >&2
  chroot "$tmp" apt-get clean
  # Debian installs the Italian voice as it_IT_m_Carlo; language `it` looks in sounds/it.
  [ -e "$tmp/usr/share/asterisk/sounds/it" ] || ln -s it_IT_m_Carlo "$tmp/usr/share/asterisk/sounds/it"
  echo "$RECIPE" >"$tmp/.centralino-recipe"
  umount_proc "$ROOT"
  rm -rf "$ROOT"
  mv "$tmp" "$ROOT"
  log "chroot ready: $(chroot "$ROOT" dpkg-query -W -f '${Version}' asterisk)"
}

config_hash() { cat "$here"/etc/* | sha256sum; }

umount_proc() {
  if mountpoint -q "$1/proc" 2>/dev/null; then umount -l "$1/proc"; fi
}

ari_up() {
  curl -fsS -o /dev/null -m 2 -u "$ARI_AUTH" "$ARI_URL/ari/asterisk/info" 2>/dev/null
}

running() { chroot "$ROOT" asterisk -rx 'core show version' >/dev/null 2>&1; }

# ARI's application registry answering: once (after a long test run) it hung while the rest of
# ARI answered, and every service then failed to connect.
apps_answer() {
  curl -fsS -o /dev/null -m 5 -u "$ARI_AUTH" "$ARI_URL/ari/applications" 2>/dev/null
}

install_config() {
  # Our config replaces Debian's samples entirely: with autoload=no only what we list loads.
  rm -rf "$ROOT/etc/asterisk"
  mkdir -p "$ROOT/etc/asterisk"
  cp -r "$here/etc/." "$ROOT/etc/asterisk/"
  # The dialplan for the configured numbers, rendered by `centralino dialplan`.
  cp "${CENTRALINO_DIALPLAN:-$repo/dialplan/extensions_centralino.conf}" \
    "$ROOT/etc/asterisk/extensions_centralino.conf"
  config_hash >"$ROOT/etc/asterisk/.centralino-config"
  chroot "$ROOT" chown -R asterisk:asterisk /etc/asterisk /var/lib/asterisk /var/log/asterisk \
    /var/spool/asterisk /var/run/asterisk 2>/dev/null || true
}

start() {
  need_root
  build
  # A running Asterisk with an older asterisk-dev/etc is restarted (the dialplan of our numbers
  # is not part of this: `dialplan FILE` reloads it in place).
  if running && [ "$(cat "$ROOT/etc/asterisk/.centralino-config" 2>/dev/null)" != "$(config_hash)" ]; then
    log "asterisk-dev/etc changed: restarting Asterisk with it"
    stop
  fi
  if running && ari_up && ! apps_answer; then
    log "Asterisk runs but its ARI applications do not answer: restarting it"
    stop
  fi
  if running; then
    log "Asterisk already running"
  else
    install_config
    mountpoint -q "$ROOT/proc" || mount -t proc proc "$ROOT/proc"
    mkdir -p "$ROOT/var/run/asterisk" "$ROOT/var/spool/asterisk/recording"
    chroot "$ROOT" chown asterisk:asterisk /var/run/asterisk /var/spool/asterisk/recording
    # Only stdin/out/err go to the daemon: a lock file held by whoever started us (flock)
    # must not stay locked for as long as Asterisk runs.
    (for fd in /proc/self/fd/*; do n=${fd##*/}; [ "$n" -gt 2 ] && eval "exec $n>&-"; done 2>/dev/null
     exec chroot "$ROOT" asterisk -U asterisk -G asterisk)
  fi
  wait_ari
}

wait_ari() {
  for _ in $(seq 1 150); do
    if ari_up; then log "ARI answers on $ARI_URL"; return 0; fi
    sleep 0.2
  done
  log "ARI did not answer on $ARI_URL within 30 s; see $ROOT/var/log/asterisk/messages"
  tail -n 20 "$ROOT/var/log/asterisk/messages" >&2 2>/dev/null || true
  return 1
}

stop() {
  need_root
  [ -d "$ROOT" ] || return 0
  if running; then
    chroot "$ROOT" asterisk -rx 'core stop now' >/dev/null 2>&1 || true
    for _ in $(seq 1 50); do running || break; sleep 0.1; done
  fi
  pkill -f "^asterisk -U asterisk" 2>/dev/null || true
  umount_proc "$ROOT"
}

case "${1:-}" in
  build) build ;;
  start) start ;;
  stop) stop ;;
  restart) stop; start ;;
  status) ari_up ;;
  wait) wait_ari ;;
  cli) shift; chroot "$ROOT" asterisk -rx "$*" ;;
  dialplan)
    [ -f "${2:-}" ] || { log "usage: $0 dialplan FILE"; exit 2; }
    cp "$2" "$ROOT/etc/asterisk/extensions_centralino.conf"
    chroot "$ROOT" asterisk -rx 'dialplan reload' >/dev/null ;;
  root) echo "$ROOT" ;;
  *) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
