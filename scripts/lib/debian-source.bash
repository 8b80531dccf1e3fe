# Sourced by scripts/build-libssh and scripts/build-sftp-server: fetch a Debian source package
# through a PRIVATE apt configuration (its sources list, lists and caches live in a folder of
# the caller's cache; the machine's /etc/apt and /var/lib/apt/lists are never written), checked
# against the suite's signed Release file with Debian's archive keyring.
#
#   machine_mirror [security]        the machine's own Debian mirror (or its security mirror)
#   private_apt_setup DIR LINE...    DIR gets a sources.list of the `deb-src` LINEs; sets the
#                                    array apt_private (apt options) and runs `apt-get update`
#   newest_source_version PACKAGE    the highest version of PACKAGE in those sources ("" if none)
#   fetch_source PACKAGE VERSION DIR unpacks it (Debian's patches applied) into DIR (emptied
#                                    first) and prints the source tree's path

# shellcheck disable=SC2034  # used by the scripts that source this file
debian_keyring=/usr/share/keyrings/debian-archive-keyring.gpg

# The Debian mirror this machine already uses (its own apt sources), never one written here.
# With `security`, the mirror of its security suite instead (empty when there is none).
machine_mirror() {
  local pick=(grep -v -- '-security')
  [ "${1:-}" = security ] && pick=(grep -- '-security')
  { grep -hsE '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}'
    grep -hsE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list | awk '$2 !~ /^\[/ {print $2} $2 ~ /^\[/ {print $3}'
  } | "${pick[@]}" | head -n 1 || true  # no sources file of a kind is no error
}

private_apt_setup() {
  local dir=$1
  shift
  mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial"
  printf '%s\n' "$@" > "$dir/sources.list"
  apt_private=(-o "Dir::Etc::SourceList=$dir/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
               -o "Dir::State::Lists=$dir/lists" -o "Dir::Cache=$dir/cache"
               -o "APT::Get::Only-Source=true")
  apt-get "${apt_private[@]}" update -qq
}

newest_source_version() {
  apt-cache "${apt_private[@]}" showsrc "$1" | sed -n 's/^Version: //p' | sort -V | tail -n 1
}

fetch_source() {
  local package=$1 version=$2 work=$3
  rm -rf "$work"
  mkdir -p "$work"
  chown _apt "$work" 2>/dev/null || true  # apt downloads as its sandbox user when it can
  (cd "$work" && apt-get "${apt_private[@]}" source -qq "$package=$version" >&2)
  find "$work" -mindepth 1 -maxdepth 1 -type d -name "$package-*" | head -n 1
}
