#!/usr/bin/python3
"""Writes the fuzz targets' seed corpora into tests/fuzz/corpus/<target>/.

Small, meaningful inputs in each target's input format (see the comment at the
top of each tests/fuzz/<target>_fuzz.cpp). Deterministic: running it again
rewrites the same files. Needs Debian's python3-scapy (scripts/setup.sh).

    /usr/bin/python3 tests/fuzz/make_corpus.py
"""
import base64
import hashlib
import os
import re
import shutil
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(HERE, "corpus")


def write(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---------------------------------------------------------------- packet_parser
def packets():
    from scapy.all import (ARP, IP, TCP, UDP, Dot1Q, Dot1AD, Ether, IPv6, IPv6ExtHdrDestOpt,
                           IPv6ExtHdrFragment, IPv6ExtHdrHopByHop, IPv6ExtHdrRouting, PPPoE, PPP, ICMP, Raw)
    e = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    v4 = IP(src="198.51.100.7", dst="203.0.113.25")
    v6 = IPv6(src="2001:db8:100::7", dst="2001:db8:25::25")
    syn = TCP(sport=40000, dport=25, flags="S", seq=1000)
    frames = {
        "ipv4_syn25": e / v4 / syn,
        "ipv4_ack_data": e / v4 / TCP(sport=40000, dport=25, flags="PA", seq=1001, ack=5001) / Raw(b"EHLO x\r\n"),
        "ipv4_options": e / IP(src="198.51.100.7", dst="203.0.113.25", options=b"\x01\x01\x01\x00") / syn,
        "ipv4_tcp_options": e / v4 / TCP(sport=40000, dport=25, flags="S", options=[("MSS", 1460), ("SAckOK", b""), ("WScale", 7)]),
        "ipv4_rst": e / v4 / TCP(sport=40000, dport=25, flags="R"),
        "ipv4_udp": e / v4 / UDP(sport=1813, dport=1813) / Raw(b"x" * 8),
        "ipv4_icmp": e / v4 / ICMP(),
        "vlan_syn25": e / Dot1Q(vlan=100) / v4 / syn,
        "qinq_syn25": e / Dot1AD(vlan=10) / Dot1Q(vlan=100) / v4 / syn,
        "pppoe_ipv4_syn25": e / PPPoE(sessionid=7) / PPP(proto=0x0021) / v4 / syn,
        "pppoe_ipv6_syn25": e / PPPoE(sessionid=7) / PPP(proto=0x0057) / v6 / syn,
        "vlan_pppoe_syn25": e / Dot1Q(vlan=100) / PPPoE(sessionid=7) / PPP(proto=0x0021) / v4 / syn,
        "ipv6_syn25": e / v6 / syn,
        "ipv6_ext_chain": e / v6 / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() / IPv6ExtHdrRouting() / syn,
        "ipv6_first_fragment": e / v6 / IPv6ExtHdrFragment(offset=0, m=1, id=7) / syn,
        "ipv6_later_fragment": e / v6 / IPv6ExtHdrFragment(offset=3, m=0, id=7) / Raw(b"x" * 16),
        "arp": e / ARP(hwsrc="02:00:00:00:00:01", psrc="198.51.100.7", pdst="198.51.100.1"),
        "vlan_arp": e / Dot1Q(vlan=5) / ARP(hwsrc="02:00:00:00:00:01", psrc="198.51.100.7", pdst="198.51.100.1"),
    }
    for name, f in frames.items():
        write("packet_parser", name, bytes(f))
    # IPv4 fragments: a first fragment too short for the TCP header, the rest, and the RFC 1858 overlap.
    raw = bytes(v4 / syn)
    ip = IP(raw)
    ip.flags = "MF"
    first = IP(bytes(ip)[:20] + bytes(syn)[:8])
    first.len = None
    first.chksum = None
    write("packet_parser", "ipv4_tiny_first_fragment", bytes(e / IP(bytes(first))))
    write("packet_parser", "ipv4_later_fragment", bytes(e / IP(src="198.51.100.7", dst="203.0.113.25", proto=6, frag=1) / Raw(b"y" * 16)))
    write("packet_parser", "ipv4_overlap_offset8", bytes(e / IP(src="198.51.100.7", dst="203.0.113.25", proto=6, frag=1, flags=0) / Raw(bytes(syn)[:16])))
    # A PPPoE discovery frame and a truncated Ethernet header.
    write("packet_parser", "pppoe_discovery", bytes(Ether(src="02:00:00:00:00:01", dst="ff:ff:ff:ff:ff:ff", type=0x8863) / Raw(b"\x11\x09\x00\x00\x00\x04\x01\x01\x00\x00")))
    write("packet_parser", "truncated_ethernet", bytes(e / v4 / syn)[:10])


# ---------------------------------------------------------------- smtp_session
def smtp_records(steps, implicit_tls=False):
    """steps: ("C"|"S", bytes); each as records of <= 126 bytes (header = len << 1 | dir; 0xfe is a gap)."""
    out = bytearray([1 if implicit_tls else 0])
    for d, data in steps:
        if d == "GAP":
            out.append(0xFE)
            continue
        data = data.encode() if isinstance(data, str) else data
        bit = 0 if d == "C" else 1
        for i in range(0, max(len(data), 1), 126):
            chunk = data[i:i + 126]
            out.append(len(chunk) << 1 | bit)
            out += chunk
    return bytes(out)


def smtp():
    body = ("From: a@example.jp\r\nTo: b@example.net\r\nSubject: test\r\n\r\nhello\r\n..dot-stuffed\r\n")
    classic = [("S", "220 mx.example.net ESMTP\r\n"), ("C", "EHLO client.example.jp\r\n"),
               ("S", "250-mx.example.net\r\n250-PIPELINING\r\n250-CHUNKING\r\n250 STARTTLS\r\n"),
               ("C", "MAIL FROM:<a@example.jp>\r\n"), ("S", "250 2.1.0 ok\r\n"),
               ("C", "RCPT TO:<b@example.net>\r\n"), ("S", "250 2.1.5 ok\r\n"),
               ("C", "RCPT TO:<nobody@example.net>\r\n"), ("S", "550 5.1.1 no such user\r\n"),
               ("C", "DATA\r\n"), ("S", "354 go ahead\r\n"), ("C", body + ".\r\n"),
               ("S", "250 2.0.0 queued\r\n"), ("C", "QUIT\r\n"), ("S", "221 2.0.0 bye\r\n")]
    write("smtp_session", "classic", smtp_records(classic))
    pipelined = [("S", "220 mx\r\n"), ("C", "EHLO [192.0.2.1]\r\n"), ("S", "250 mx\r\n"),
                 ("C", "MAIL FROM:<>\r\nRCPT TO:<x@example.net>\r\nRCPT TO:<y@example.net>\r\nDATA\r\n"),
                 ("S", "250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n"), ("C", "Subject: x\r\n\r\nbody\r\n.\r\n"),
                 ("S", "250 ok\r\n")]
    write("smtp_session", "pipelined", smtp_records(pipelined))
    bdat = [("S", "220 mx\r\n"), ("C", "EHLO localhost\r\n"), ("S", "250 ok\r\n"), ("C", "MAIL FROM:<a@b.example>\r\n"),
            ("S", "250 ok\r\n"), ("C", "RCPT TO:<c@d.example>\r\n"), ("S", "250 ok\r\n"),
            ("C", "BDAT 12\r\nSubject: x\r\n"), ("S", "250 ok\r\n"), ("C", "BDAT 6 LAST\r\nhello\n"), ("S", "250 ok\r\n")]
    write("smtp_session", "bdat", smtp_records(bdat))
    plain = base64.b64encode(b"\0alice@example.jp\0secret").decode()
    auth = [("S", "220 mx\r\n"), ("C", "EHLO pc\r\n"), ("S", "250-mx\r\n250 AUTH PLAIN LOGIN\r\n"),
            ("C", "AUTH PLAIN " + plain + "\r\n"), ("S", "235 2.7.0 ok\r\n"),
            ("C", "AUTH LOGIN\r\n"), ("S", "334 VXNlcm5hbWU6\r\n"), ("C", base64.b64encode(b"bob").decode() + "\r\n"),
            ("S", "334 UGFzc3dvcmQ6\r\n"), ("C", base64.b64encode(b"pw").decode() + "\r\n"), ("S", "535 no\r\n")]
    write("smtp_session", "auth", smtp_records(auth))
    starttls = [("S", "220 mx\r\n"), ("C", "EHLO pc.example\r\n"), ("S", "250 STARTTLS\r\n"),
                ("C", "STARTTLS\r\nRSET\r\n"), ("S", "220 go\r\n"), ("C", b"\x16\x03\x01\x00\x05hello")]
    write("smtp_session", "starttls_injection", smtp_records(starttls))
    write("smtp_session", "implicit_tls", smtp_records([("C", b"\x16\x03\x01\x02\x00\x01"), ("S", b"\x16\x03\x03")], True))
    odd = [("C", "EHLO early\r\n"), ("S", "220 mx\r\n"), ("C", "HELO 192.0.2.7\nNOOP\r\n"), ("S", "250 x\r\n"), ("GAP", ""),
           ("S", "421 4.4.2 timeout\r\n")]
    write("smtp_session", "pregreet_bare_lf_gap", smtp_records(odd))
    long_line = [("S", "220 mx\r\n"), ("C", "VRFY " + "a" * 600 + "\r\n"), ("S", "252 " + "b" * 600 + "\r\n")]
    write("smtp_session", "long_lines", smtp_records(long_line))


# ---------------------------------------------------------------- mail_decoder
def mime():
    def seed(name, msg, limit_byte=0, split=7):
        write("mail_decoder", name, bytes([limit_byte, split]) + (msg.encode() if isinstance(msg, str) else msg))

    jp = "未承諾広告　出会い系サイトのご案内"
    jis = jp.encode("iso2022_jp")
    b64jis = base64.encodebytes(jis).decode().replace("\n", "\r\n")
    subj = "=?ISO-2022-JP?B?" + base64.b64encode("件名テスト".encode("iso2022_jp")).decode() + "?="
    seed("iso2022jp_base64", "Subject: " + subj + "\r\nMIME-Version: 1.0\r\n"
         "Content-Type: text/plain; charset=ISO-2022-JP\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64jis)
    seed("iso2022jp_raw_7bit", b"Subject: \x1b$B%F%9%H\x1b(B\r\n\r\n" + jis + b"\r\n")
    qp = "".join("=%02X" % b for b in "UTF-8の本文です".encode()) + "=\r\n soft break\r\n"
    seed("utf8_qp", "Content-Type: text/plain; charset=\"utf-8\"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" + qp)
    seed("sjis_8bit", b"Content-Type: text/plain; charset=Shift_JIS\r\n\r\n" + "ＳＪＩＳ本文①".encode("cp932") + b"\r\n")
    seed("eucjp_8bit", b"Content-Type: text/plain; charset=EUC-JP\r\n\r\n" + "EUC本文".encode("euc_jp") + b"\r\n")
    multipart = ("Content-Type: multipart/mixed; boundary=\"outer\"\r\n\r\npreamble\r\n--outer\r\n"
                 "Content-Type: multipart/alternative; boundary=inner\r\n\r\n--inner\r\n"
                 "Content-Type: text/plain; charset=utf-8\r\n\r\nplain part\r\n--inner\r\n"
                 "Content-Type: text/html; charset=gb2312\r\nContent-Transfer-Encoding: base64\r\n\r\n"
                 + base64.b64encode("<p>简体中文</p>".encode("gb2312")).decode() + "\r\n--inner--\r\n--outer\r\n"
                 "Content-Type: message/rfc822\r\n\r\nSubject: =?utf-8?Q?embedded_=E3=83=86?= =?utf-8?Q?=E3=82=B9=E3=83=88?=\r\n\r\nembedded body\r\n"
                 "--outer\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n--outer--\r\nepilogue\r\n")
    seed("nested_multipart", multipart, split=13)
    seed("folded_headers_limit", "Subject: a\r\n\tfolded =?koi8-r?B?" + base64.b64encode("тест".encode("koi8_r")).decode()
         + "?=\r\nX-Long: " + "x" * 300 + "\r\n\r\n" + "body " * 60, limit_byte=0x81, split=3)
    seed("big5_euckr_cp1252", "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain; charset=big5\r\n\r\n".encode()
         + "繁體".encode("big5") + b"\r\n--b\r\nContent-Type: text/plain; charset=euc-kr\r\n\r\n" + "한국어".encode("euc_kr")
         + b"\r\n--b\r\nContent-Type: text/plain; charset=windows-1252\r\n\r\ncaf\xe9\r\n--b--\r\n")
    seed("bare_lf_malformed", "Content-Type: text/plain; charset=iso-2022-jp\nContent-Transfer-Encoding: base64\n\nGyRC!!\x1b$B\x1b(\n=?broken?Q?x\n")


# ---------------------------------------------------------------- radius
SECRET = b"xyzzy5461-fuzz"   # the secret radius_fuzz.cpp verifies with


def radius_packet(ident, attrs, code=4):
    body = b"".join(bytes([t, len(v) + 2]) + v for t, v in attrs)
    length = 20 + len(body)
    hdr = struct.pack("!BBH", code, ident, length)
    auth = hashlib.md5(hdr + b"\0" * 16 + body + SECRET).digest()
    return hdr + auth + body


def radius():
    u32 = lambda v: struct.pack("!I", v)
    ip4 = lambda s: bytes(int(x) for x in s.split("."))
    import ipaddress
    v6p = lambda p: b"\0" + bytes([ipaddress.ip_network(p).prefixlen]) + ipaddress.ip_network(p).network_address.packed[
        : (ipaddress.ip_network(p).prefixlen + 7) // 8]
    common = [(1, b"alice@example.jp"), (44, b"sess-0001"), (4, ip4("192.0.2.1")), (32, b"bng-1")]
    write("radius", "start_v4", radius_packet(1, [(40, u32(1))] + common + [(8, ip4("198.51.100.7")), (55, u32(1795000000))]))
    write("radius", "interim_v6", radius_packet(2, [(40, u32(3))] + common + [
        (123, v6p("2001:db8:100:100::/56")), (97, v6p("2001:db8:200::/64")), (46, u32(600)), (41, u32(2))]))
    write("radius", "stop_proxy_state", radius_packet(3, [(40, u32(2))] + common + [(8, ip4("198.51.100.7")), (49, u32(1)),
                                                                                   (33, b"proxy-1"), (33, b"p2")]))
    write("radius", "accounting_on_nas_v6", radius_packet(4, [(40, u32(7)), (95, bytes(16)), (32, b"bng-2")]))
    write("radius", "utf8_and_controls", radius_packet(5, [(40, u32(1)), (1, "山田\x01\\x".encode()), (44, b"\xff\xfe"),
                                                          (4, ip4("192.0.2.1")), (8, ip4("255.255.255.254"))]))
    write("radius", "duplicate_attribute", radius_packet(6, [(40, u32(1)), (1, b"a"), (1, b"b")]))
    write("radius", "access_request_code1", radius_packet(7, [(1, b"a")], code=1))
    p = radius_packet(8, [(40, u32(1))] + common)
    write("radius", "padding_after_length", p + b"\0" * 8)


# ---------------------------------------------------------------- policy
def policies():
    for d in ("configs", "configs/radius"):
        for f in sorted(os.listdir(os.path.join(ROOT, d))):
            if f.endswith(".yaml"):
                shutil.copyfile(os.path.join(ROOT, d, f), os.path.join(OUT, "policy", f.replace(".yaml", "") + ".yaml"))
    # Every YAML example in the policy and inspection documentation.
    for doc in ("docs/policy.md", "docs/inspection.md", "docs/subscribers.md", "docs/events.md"):
        path = os.path.join(ROOT, doc)
        if not os.path.exists(path):
            continue
        blocks = re.findall(r"```yaml\n(.*?)```", open(path, encoding="utf-8").read(), re.S)
        for i, b in enumerate(blocks):
            write("policy", "%s_%02d.yaml" % (os.path.basename(doc)[:-3], i), b)
    write("policy", "errors.yaml", "version: 2\nports: {smtp: [0, 70000]}\nsubscribers:\n  dynamic: [198.51.100.1/24, bad]\n"
          "op25b: {mode: maybe}\nlimits:\n  - {name: x, measure: messages, max: -1, window: 999999999999d}\nunknown: 1\n")
    write("policy", "yaml_syntax_error.yaml", "version: 1\nports: [25\n  smtp: {\n")


# ---------------------------------------------------------------- control_api
def api():
    reqs = {
        "status": "GET\n/v1/status\n",
        "policy_show": "GET\n/v1/policy\n",
        "policy_apply_dry_run": "POST\n/v1/policy?dry_run=1\n" + open(os.path.join(ROOT, "configs/op25b-enforce.yaml")).read(),
        "policy_rollback": "POST\n/v1/policy/rollback\n",
        "bindings_list": "GET\n/v1/bindings?limit=10&account=alice@example.jp\n",
        "bindings_add": "POST\n/v1/bindings\n{\"prefix\": \"198.51.100.7/32\", \"account\": \"alice@example.jp\"}",
        "bindings_add_v6": "POST\n/v1/bindings\n{\"prefix\": \"2001:db8:100:100::/56\", \"account\": \"bob\"}",
        "bindings_del": "DELETE\n/v1/bindings?prefix=198.51.100.0/28\n",
        "whois": "GET\n/v1/whois?address=198.51.100.7&at=2026-11-23T12:00:00Z\n",
        "whois_unix": "GET\n/v1/whois?address=2001:db8:100::1&at=1795000000\n",
        "accounts": "GET\n/v1/accounts?suspended=true\n",
        "suspend": "POST\n/v1/accounts/suspend\n{\"account\": \"spammer@example.jp\"}",
        "resume": "POST\n/v1/accounts/resume\n{\"account\": \"spammer@example.jp\"}",
        "events": "GET\n/v1/events?n=100&since_ns=1795000000000000000&type=op25b_block&subscriber=198.51.100.7&account=a\n",
        "report_csv": "GET\n/v1/report?since=2026-11-01T00:00:00Z&until=1795000000&format=csv\n",
        "top": "GET\n/v1/top?window=90m&by=score\n",
        "top_days": "GET\n/v1/top?window=7d&by=limit_exceeded\n",
        "campaigns": "GET\n/v1/campaigns?n=1000&min_subscribers=25\n",
        "bad_json": "POST\n/v1/bindings\n{\"prefix\": 7, \"account\": [\"x\"]",
        "unknown": "PUT\n/v1/nothing?x\n",
        # Targets as sent: the server decodes them (make_api_request), NULs and ESCs included.
        "events_bad_filters": "GET\n/v1/events?subscriber=999.1.1.1&type=%00&account=a%1Bb\n",
        "events_v6_filters": "GET\n/v1/events?subscriber=2001%3ADB8%3A100%3A%3A7&type=api_change&account=%E5%B1%B1+x\n",
        "events_prefix": "GET\n/v1/events?subscriber=198.51.100.0%2F24\n",
        "status_nul_path": "GET\n/v1/status%00/x\n",
        "suspend_escape": "POST\n/v1/accounts/suspend\n{\"account\": \"evil\\u001b]0;x\\u0007\"}",
        "bindings_add_c1": "POST\n/v1/bindings\n{\"prefix\": \"198.51.100.8\", \"account\": \"a\\u009b2J\"}",
    }
    for name, r in reqs.items():
        write("control_api", name, r)


# ---------------------------------------------------------- message_fingerprint
def fingerprint_texts():
    # Byte 0 seeds the segmentation; the rest is decoded body text (UTF-8, or not).
    en = ("We are pleased to inform you that your account has been selected for an exclusive reward. "
          "To claim it, confirm your details within three days using the secure link below.\r\n")
    ja = "このたびは当サービスをご利用いただき誠にありがとうございます。お客様のアカウントに異常なログインが検出されました。\r\n"
    texts = {
        "english": "Dear Taro Yamada,\r\n\r\n" + en * 4,
        "japanese": "山田太郎様\r\n" + ja * 3,
        "links_and_addresses": en + "https://rewards.example.com/claim/Xy7Q2?uid=1#top mail taro@example.net, "
                               "http:not-a-url e-mail 1,000 o'clock end... -lead 'quoted' trail..\r\n",
        # after a first line, where the AVX2 word kernel reads: words at its 16-byte limit and past it
        "long_words": "Hello there,\r\n" + en + "abcdefghijklmnoP Abcdefghijklmnopq " + "z" * 50 + " "
                      + ("word " * 40) + "Q7 x\r\n",
        "fullwidth_and_invisible": "ＡＢＣ１２ fr\u200bee mo\u00adney caf\u00e9 \u0410\u0411 \U0001F600 " + en,
        "invalid_utf8": en.encode() + b"\xff\xfe broken \xe3\x81 \xed\xa0\x80 \x80" + en.encode(),
        "beyond_the_sample": ("lorem ipsum dolor sit amet " * 300),
    }
    for i, (name, t) in enumerate(texts.items()):
        write("message_fingerprint", name, bytes([i * 37 + 1]) + (t if isinstance(t, bytes) else t.encode()))


def main():
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(os.path.join(OUT, "policy"))
    packets()
    smtp()
    mime()
    fingerprint_texts()
    radius()
    policies()
    api()
    for t in sorted(os.listdir(OUT)):
        print(t, len(os.listdir(os.path.join(OUT, t))))


if __name__ == "__main__":
    sys.exit(main())
