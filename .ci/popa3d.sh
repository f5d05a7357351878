#!/usr/bin/env bash
# Provide popa3d, a real POP3 server that still answers LAST (RFC 1460), for
# the tests of fetchd's LAST fallback.
#
# The Debian package conflicts with dovecot-pop3d, so it is downloaded and
# unpacked instead of installed. The script also creates what popa3d needs at
# run time: its privilege-separation user, its empty chroot directory, its PAM
# service, and a mail user with a known password. Safe to run again.
#
# Prints the path of the binary on its last line.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache_dir="${repo_root}/.ci/cache"
# Must match POPA3D_BINARY, POPA3D_USER and POPA3D_PASSWORD in tests/conftest.py.
prefix="/opt/fetchd-test/popa3d"
binary="${prefix}/usr/sbin/popa3d"
mail_user="fetchdpop"
mail_password="popa3d-test-secret"

if [[ "$(id -u)" -ne 0 ]]; then
    echo "popa3d.sh: must run as root (it adds users and writes /etc/pam.d)" >&2
    exit 1
fi

mkdir -p "${cache_dir}"
shopt -s nullglob
debs=("${cache_dir}"/popa3d_*.deb)
if [[ ${#debs[@]} -eq 0 ]]; then
    # apt-get download writes into the current directory; it needs package
    # lists, so update them once if the first try finds nothing.
    if ! (cd "${cache_dir}" && apt-get download -q popa3d 2>/dev/null); then
        apt-get update -q >/dev/null
        (cd "${cache_dir}" && apt-get download -q popa3d)
    fi
    debs=("${cache_dir}"/popa3d_*.deb)
fi

if [[ ! -x "${binary}" ]]; then
    mkdir -p "${prefix}"
    dpkg-deb -x "${debs[0]}" "${prefix}"
fi

# popa3d drops privileges to this user and chroots into its (empty) home.
getent group popa3d >/dev/null || groupadd --system popa3d
getent passwd popa3d >/dev/null ||
    useradd --system --gid popa3d --home-dir /var/lib/popa3d --no-create-home \
        --shell /usr/sbin/nologin popa3d
install -d -o root -g root -m 0755 /var/lib/popa3d

# Authentication goes through PAM service "popa3d" (pam_unix against /etc/shadow).
if [[ ! -e /etc/pam.d/popa3d ]]; then
    install -m 0644 "${prefix}/etc/pam.d/popa3d" /etc/pam.d/popa3d
fi

# The mailbox popa3d serves is the mbox file /var/mail/<user>.
getent passwd "${mail_user}" >/dev/null ||
    useradd --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "${mail_user}"
echo "${mail_user}:${mail_password}" | chpasswd
install -d -m 2775 -o root -g mail /var/mail

echo "${binary}"
