#!/usr/bin/env bash
# Installs Lifeguard as a systemd service, from a clone or an unpacked release:
#
#   sudo bash scripts/install.sh              # install, or upgrade in place (the config is kept)
#   sudo bash scripts/install.sh --uninstall  # remove it all but the config, the state and the user
#
# What it does, each step printed as it happens:
# - installs python3-venv with apt-get, only if Python's venv module is missing (so a host with no
#   package index works as long as it has python3-venv);
# - creates the `lifeguard` system user and group (no login, no home);
# - installs Lifeguard into a virtualenv at /opt/lifeguard, from the wheels in ./wheels when that
#   folder exists (an offline release: nothing is fetched), else from the package index, and links
#   /usr/local/bin/lifeguard to it;
# - writes /etc/lifeguard/config.yaml (the shipped example, state in /var/lib/lifeguard) only if
#   there is none, mode 0640 root:lifeguard, and an empty /etc/lifeguard/env for ${VAR}s;
# - installs systemd/lifeguard.service into /etc/systemd/system, enables it, and (re)starts it when
#   systemd is running; elsewhere (a container build, a chroot) it is only enabled.
# Container checks and heals need the Docker socket: the unit's SupplementaryGroups=docker line
# grants it (root-equivalent access to the host, hence off unless you need it).
set -euo pipefail

PREFIX=/opt/lifeguard
BIN_LINK=/usr/local/bin/lifeguard
CONFIG_DIR=/etc/lifeguard
CONFIG="$CONFIG_DIR/config.yaml"
ENV_FILE="$CONFIG_DIR/env"
STATE_DIR=/var/lib/lifeguard
UNIT_NAME=lifeguard.service
UNIT="/etc/systemd/system/$UNIT_NAME"
ACCOUNT=lifeguard
SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

say() { printf 'install.sh: %s\n' "$*"; }
die() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }
systemd_running() { [ -d /run/systemd/system ]; }

usage() {
  sed -n '2,6p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

ensure_python() {
  if python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
    return
  fi
  command -v apt-get >/dev/null 2>&1 || die "python3 with its venv module is needed (python3-venv on Debian/Ubuntu)"
  say "installing python3-venv (Python's venv module is missing)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
}

ensure_account() {
  if getent passwd "$ACCOUNT" >/dev/null; then
    say "system user $ACCOUNT exists"
    return
  fi
  local nologin=/usr/sbin/nologin
  [ -x "$nologin" ] || nologin=/bin/false
  useradd --system --user-group --home-dir "$STATE_DIR" --no-create-home --shell "$nologin" \
    --comment "Lifeguard monitoring agent" "$ACCOUNT"
  say "created system user and group $ACCOUNT"
}

install_venv() {
  python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || die "Python >= 3.11 is needed, found $(python3 -V 2>&1)"
  if [ -x "$PREFIX/bin/python" ] && ! "$PREFIX/bin/python" -c '' >/dev/null 2>&1; then
    say "$PREFIX was made by a Python that is gone: making it anew"
    rm -rf "$PREFIX"
  fi
  if [ ! -x "$PREFIX/bin/python" ]; then
    python3 -m venv "$PREFIX"
    say "created the virtualenv $PREFIX"
  fi

  local -a from=()
  local target
  if compgen -G "$SRC/wheels/*.whl" >/dev/null; then
    from=(--no-index --find-links "$SRC/wheels")
    say "installing from the wheels in $SRC/wheels (no package index)"
  else
    say "installing from the package index"
  fi
  # A release may carry Lifeguard's own wheel; a clone is built from a copy of its source, so that
  # the build leaves no root-owned build/ or *.egg-info in the clone.
  local wheel
  wheel="$(compgen -G "$SRC/wheels/lifeguard-*.whl" | sort -V | tail -n 1 || true)"
  local tmp=""
  if [ -n "$wheel" ]; then
    target="$wheel"
  else
    [ -f "$SRC/pyproject.toml" ] || die "$SRC has no pyproject.toml: run this script from a clone or an unpacked release"
    tmp="$(mktemp -d)"
    tar -C "$SRC" --exclude=./.git --exclude=./.venv --exclude=./state --exclude=./wheels \
      --exclude=./build --exclude='*.egg-info' -cf - . | tar -C "$tmp" -xf -
    target="$tmp"
  fi
  "$PREFIX/bin/python" -m pip install -q --disable-pip-version-check --upgrade "${from[@]}" "$target"
  [ -z "$tmp" ] || rm -rf "$tmp"
  ln -sfn "$PREFIX/bin/lifeguard" "$BIN_LINK"
  say "installed $("$PREFIX/bin/lifeguard" --version) into $PREFIX; $BIN_LINK -> $PREFIX/bin/lifeguard"
}

install_config() {
  install -d -m 0750 -o root -g "$ACCOUNT" "$CONFIG_DIR"
  if [ -e "$CONFIG" ]; then
    say "kept the existing $CONFIG"
  else
    local tmp
    tmp="$(mktemp)"
    # The shipped example, with its state where the unit keeps it (StateDirectory=lifeguard).
    sed -E "s#^([[:space:]]*state_dir:)[[:space:]]*\./state([[:space:]].*)?\$#\1 $STATE_DIR#" \
      "$SRC/config.yaml" >"$tmp"
    grep -q "state_dir: $STATE_DIR\$" "$tmp" || { rm -f "$tmp"; die "cannot set state_dir in $SRC/config.yaml"; }
    install -m 0640 -o root -g "$ACCOUNT" "$tmp" "$CONFIG"
    rm -f "$tmp"
    say "wrote $CONFIG (0640 root:$ACCOUNT; state in $STATE_DIR): edit it, then: systemctl restart lifeguard"
  fi
  if [ ! -e "$ENV_FILE" ]; then
    local envtmp
    envtmp="$(mktemp)"
    cat >"$envtmp" <<'EOF'
# Variables for ${VAR} references in config.yaml, one NAME=value a line, e.g.
# LIFEGUARD_WEBHOOK_SECRET=whsec_...
EOF
    install -m 0640 -o root -g "$ACCOUNT" "$envtmp" "$ENV_FILE"
    rm -f "$envtmp"
    say "wrote $ENV_FILE (0640 root:$ACCOUNT) for secrets referenced as \${VAR}"
  fi
  if [ ! -e "$STATE_DIR" ]; then
    install -d -m 0700 -o "$ACCOUNT" -g "$ACCOUNT" "$STATE_DIR"
    say "created $STATE_DIR (0700 $ACCOUNT)"
  fi
  if "$PREFIX/bin/lifeguard" check-config -c "$CONFIG" >/dev/null 2>&1; then
    say "config: $("$PREFIX/bin/lifeguard" check-config -c "$CONFIG" 2>&1 | head -n 1)"
  else
    say "WARNING: $CONFIG does not validate; the service will refuse to start until it does:"
    "$PREFIX/bin/lifeguard" check-config -c "$CONFIG" >&2 || true
  fi
}

install_unit() {
  if [ ! -d /etc/systemd/system ]; then
    say "no systemd here: not installing $UNIT_NAME (run: $BIN_LINK run -c $CONFIG)"
    return
  fi
  local fresh=1
  [ -e "$UNIT" ] && fresh=0
  install -m 0644 "$SRC/systemd/$UNIT_NAME" "$UNIT"
  say "installed $UNIT (local changes belong in a drop-in: systemctl edit lifeguard)"
  if [ "$fresh" = 1 ] && getent group docker >/dev/null 2>&1; then
    # Only on a fresh install: an upgrade keeps whatever the admin decided since.
    install -d -m 0755 "$UNIT.d"
    printf '[Service]\n# root-equivalent: the Docker socket (container checks and heals)\nSupplementaryGroups=docker\n' \
      >"$UNIT.d/docker.conf"
    say "the docker group exists: granted it to the agent in $UNIT.d/docker.conf (root-equivalent; delete that file to withhold it)"
  fi
  if ! systemd_running; then
    systemctl enable "$UNIT_NAME" >/dev/null 2>&1 || true
    say "systemd is not running here: $UNIT_NAME is enabled and starts at the next boot"
    return
  fi
  systemctl daemon-reload
  systemctl enable --quiet "$UNIT_NAME"
  if systemctl is-active --quiet "$UNIT_NAME"; then
    say "restarting lifeguard (upgrade)"
    systemctl restart "$UNIT_NAME" || true
  else
    systemctl start "$UNIT_NAME" || true
  fi
  if systemctl is-active --quiet "$UNIT_NAME"; then
    say "lifeguard is enabled and running: systemctl status lifeguard; journalctl -u lifeguard -f"
  else
    say "lifeguard did not start; its last log lines:"
    journalctl -u "$UNIT_NAME" -n 20 --no-pager -o cat >&2 || true
    exit 1
  fi
}

uninstall() {
  if [ -e "$UNIT" ]; then
    if systemd_running; then
      systemctl disable --now --quiet "$UNIT_NAME" || true
      say "stopped and disabled lifeguard"
    else
      systemctl disable --quiet "$UNIT_NAME" >/dev/null 2>&1 || true
    fi
    rm -f "$UNIT"
    rm -rf "$UNIT.d"
    systemd_running && systemctl daemon-reload
    say "removed $UNIT"
  fi
  if [ -L "$BIN_LINK" ]; then
    rm -f "$BIN_LINK"
    say "removed $BIN_LINK"
  fi
  if [ -d "$PREFIX" ]; then
    rm -rf "$PREFIX"
    say "removed $PREFIX"
  fi
  say "kept $CONFIG_DIR (config, env), $STATE_DIR (database) and the $ACCOUNT user that owns them;"
  say "to remove those too: rm -r $CONFIG_DIR $STATE_DIR /var/lib/private/lifeguard; userdel $ACCOUNT"
}

main() {
  local action=install
  case "${1:-}" in
    "") ;;
    --uninstall) action=uninstall ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
  [ "$(id -u)" -eq 0 ] || die "run it as root: sudo bash $0 ${1:-}"
  if [ "$action" = uninstall ]; then
    uninstall
    return
  fi
  ensure_python
  ensure_account
  install_venv
  install_config
  install_unit
}

main "$@"
