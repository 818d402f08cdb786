"""What the simulated Internet is made of: AS types, device families, their ports and banners.

Everything here is plain data read by :mod:`gpsgpu.sim.internet`, which compiles it into small
tables (one row per family, slot, AS or model) and draws hosts from them. The numbers are chosen so
that the simulation carries both the structure GPS exploits (device families with correlated port
sets and shared banners, certificates and TCP windows; vendors confined to some ASes; per-/24
density) and the structure that defeats it (random ports, port-forwarded single services, a long tail
of rare appliances on high ports, pseudo-service hosts, churn). ``gpsgpu simulate`` reports the
resulting statistics beside the ones the GPS talk quotes, so the choices can be judged.

Port codes of a slot: a value ``>= 0`` is that port; the negative codes below are resolved per host.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: The slot's port is the k-th port of the host's device model (``MODEL_PORT - k``).
MODEL_PORT = -10
#: A port drawn per host, uniform over the unprivileged ports (a router picking a random HTTPS port).
RANDOM_PORT = -2
#: The management port its ISP configured for the host's AS (usually 7547, the CWMP port).
AS_PORT = -3
#: A port-forwarded service: the standard port, a common alternative, or a random external port.
FORWARD_PORT = -4

AS_TYPES: tuple[str, ...] = ("residential", "hosting", "enterprise", "education", "mobile")


@dataclass(frozen=True)
class ASType:
    """How one kind of network is laid out.

    Attributes
    ----------
    weight : share of ASes of this type.
    sizes, size_weights : number of /16s an AS of this type owns, and how often.
    active_24 : probability that a /24 of such an AS is in use at all.
    levels, level_weights : host density (share of addresses answering) of an active /24.
    """

    name: str
    weight: float
    sizes: tuple[int, ...]
    size_weights: tuple[float, ...]
    active_24: float
    levels: tuple[float, ...]
    level_weights: tuple[float, ...]


AS_TYPE_TABLE: tuple[ASType, ...] = (
    ASType(
        "residential", 0.30, (1, 2, 4, 8), (0.45, 0.25, 0.2, 0.1), 0.85, (0.03, 0.09, 0.22), (0.3, 0.5, 0.2)
    ),
    ASType("hosting", 0.22, (1, 2, 4), (0.6, 0.25, 0.15), 0.55, (0.05, 0.25, 0.6), (0.35, 0.4, 0.25)),
    ASType("enterprise", 0.28, (1, 2), (0.85, 0.15), 0.3, (0.01, 0.05, 0.2), (0.5, 0.35, 0.15)),
    ASType("education", 0.10, (1, 2), (0.7, 0.3), 0.5, (0.01, 0.06, 0.2), (0.4, 0.4, 0.2)),
    ASType("mobile", 0.10, (1, 2, 4), (0.4, 0.35, 0.25), 0.2, (0.003, 0.01, 0.03), (0.5, 0.4, 0.1)),
)


@dataclass(frozen=True)
class Slot:
    """One service a device of a family may run.

    Attributes
    ----------
    port : a port, or one of the negative codes of this module.
    protocol : the LZR fingerprint of the service (``http``, ``tls``, ``ssh``, ...).
    p : probability that the service is open (or, in an exclusive family, its relative weight).
    banner : name of the banner style in :mod:`gpsgpu.sim.banners`.
    per_host : the banner carries a per-host part (a certificate, a host name): no two hosts share it.
    std : for :data:`FORWARD_PORT`, the service's standard port (forwarded unchanged in some homes).
    alt : for :data:`FORWARD_PORT`, common alternative external ports.
    """

    port: int
    protocol: str
    p: float
    banner: str
    per_host: bool = False
    std: int = 0
    alt: tuple[int, ...] = ()


@dataclass(frozen=True)
class Family:
    """A kind of device: the services it runs, where it lives and how its models differ.

    Attributes
    ----------
    mix : AS type -> weight of this family among the hosts of such an AS.
    presence : share of ASes (of the types in ``mix``) where the family exists at all; vendors
        confined to some networks have a small one.
    n_models : number of models (vendors, versions, software stacks); model popularity is Zipf with
        exponent ``model_skew``.
    confinement : probability that a host's model is one of its AS's ``local_models`` picks (ISP-issued
        CPE, a hoster's image) rather than a draw from the whole market.
    hosts_per_model : when set, the family has ``hosts // hosts_per_model`` models (at least 60, at
        most ``n_models``): a long tail of makers that grows with the population, so that a small
        simulation keeps the proportions of a large one.
    n_model_ports : ports each model owns (:data:`MODEL_PORT` slots), drawn from the high-port tail
        unless ``known_model_ports`` fixes them for the first models.
    exclusive : exactly one slot is open, drawn with weights ``p`` (single-service devices).
    pseudo : the host answers on many ports with one banner (handled apart from the slots).
    windows : TCP windows of the family's stacks; a model has one of them.
    """

    name: str
    slots: tuple[Slot, ...]
    mix: dict[str, float]
    presence: float = 1.0
    n_models: int = 1
    model_skew: float = 1.0
    confinement: float = 0.0
    local_models: int = 2
    hosts_per_model: int = 0
    n_model_ports: int = 0
    known_model_ports: tuple[tuple[int, ...], ...] = ()
    exclusive: bool = False
    pseudo: bool = False
    windows: tuple[int, ...] = (29200, 64240, 65535, 14600, 5840)
    vendors: tuple[str, ...] = field(default=())


def _mp(k: int) -> int:
    return MODEL_PORT - k


FAMILIES: tuple[Family, ...] = (
    Family(
        "cpe_router",
        (
            Slot(AS_PORT, "http", 0.55, "cwmp"),
            Slot(80, "http", 0.32, "router_login"),
            Slot(443, "tls", 0.16, "tls_model"),
            Slot(_mp(0), "http", 0.22, "router_login"),
            Slot(_mp(1), "tls", 0.12, "tls_model"),
            Slot(23, "telnet", 0.08, "telnet_login"),
            Slot(22, "ssh", 0.05, "ssh_dropbear"),
            Slot(8080, "http", 0.05, "router_login"),
        ),
        {"residential": 0.52, "enterprise": 0.03, "education": 0.02, "mobile": 0.45},
        n_models=60,
        model_skew=1.1,
        confinement=0.85,
        local_models=2,
        n_model_ports=2,
        known_model_ports=((37215, 37443), (52869, 8443), (8291, 8728), (4567, 443), (58000, 58443)),
        windows=(5840, 14600, 28960, 4380, 5792),
        vendors=(
            "Huawei",
            "ZTE",
            "MikroTik",
            "Technicolor",
            "Sagemcom",
            "Zyxel",
            "TP-Link",
            "Arris",
            "DrayTek",
        ),
    ),
    Family(
        "random_port_router",
        (
            Slot(RANDOM_PORT, "tls", 0.85, "tls_myfritz", per_host=True),
            Slot(8089, "http", 0.12, "tr064"),
            Slot(443, "tls", 0.08, "tls_myfritz", per_host=True),
            Slot(21, "ftp", 0.04, "ftp_fritz"),
        ),
        {"residential": 0.07},
        presence=0.3,
        windows=(29200,),
        vendors=("AVM",),
    ),
    Family(
        "web_server",
        (
            Slot(80, "http", 0.9, "web_page"),
            Slot(443, "tls", 0.8, "tls_host", per_host=True),
            Slot(22, "ssh", 0.55, "ssh_openssh"),
            Slot(21, "ftp", 0.1, "ftp_server"),
            Slot(8080, "http", 0.05, "web_page"),
            Slot(8443, "tls", 0.04, "tls_host", per_host=True),
            Slot(3306, "mysql", 0.07, "mysql"),
            Slot(25, "smtp", 0.06, "smtp", per_host=True),
        ),
        {"hosting": 0.28, "enterprise": 0.12, "education": 0.14, "residential": 0.01},
        n_models=14,
        model_skew=1.0,
        confinement=0.5,
        local_models=3,
        windows=(29200, 64240, 65535, 26883),
        vendors=("nginx", "Apache", "LiteSpeed", "Microsoft-IIS", "openresty", "Caddy"),
    ),
    Family(
        "cpanel",
        (
            Slot(80, "http", 0.95, "web_page"),
            Slot(443, "tls", 0.9, "tls_host", per_host=True),
            Slot(21, "ftp", 0.6, "ftp_server"),
            Slot(22, "ssh", 0.4, "ssh_openssh"),
            Slot(2082, "http", 0.5, "cpanel"),
            Slot(2083, "tls", 0.7, "tls_host", per_host=True),
            Slot(2086, "http", 0.3, "cpanel"),
            Slot(2087, "tls", 0.5, "tls_host", per_host=True),
            Slot(2095, "http", 0.2, "cpanel"),
            Slot(2096, "tls", 0.3, "tls_host", per_host=True),
            Slot(3306, "mysql", 0.2, "mysql"),
            Slot(110, "pop3", 0.2, "pop3"),
            Slot(143, "imap", 0.2, "imap"),
        ),
        {"hosting": 0.06},
        presence=0.6,
        n_models=3,
        windows=(29200, 64240),
        vendors=("cPanel",),
    ),
    Family(
        "mail_server",
        (
            Slot(25, "smtp", 0.92, "smtp", per_host=True),
            Slot(587, "smtp", 0.6, "smtp", per_host=True),
            Slot(465, "tls", 0.5, "tls_host", per_host=True),
            Slot(143, "imap", 0.5, "imap"),
            Slot(993, "tls", 0.6, "tls_host", per_host=True),
            Slot(110, "pop3", 0.4, "pop3"),
            Slot(995, "tls", 0.45, "tls_host", per_host=True),
            Slot(80, "http", 0.3, "web_page"),
            Slot(443, "tls", 0.35, "tls_host", per_host=True),
        ),
        {"hosting": 0.05, "enterprise": 0.07, "education": 0.08},
        n_models=5,
        windows=(29200, 64240, 8192),
        vendors=("Postfix", "Exim", "Microsoft ESMTP", "Zimbra", "Sendmail"),
    ),
    Family(
        "ssh_server",
        (
            Slot(22, "ssh", 0.85, "ssh_openssh"),
            Slot(RANDOM_PORT, "ssh", 0.08, "ssh_openssh"),
            Slot(80, "http", 0.08, "web_page"),
        ),
        {"hosting": 0.15, "education": 0.08, "enterprise": 0.04},
        n_models=10,
        windows=(29200, 64240, 65160),
        vendors=("OpenSSH",),
    ),
    Family(
        "windows_host",
        (
            Slot(3389, "rdp", 0.7, "rdp"),
            Slot(445, "smb", 0.2, "smb"),
            Slot(135, "unknown", 0.25, "msrpc"),
            Slot(5985, "http", 0.15, "winrm"),
            Slot(80, "http", 0.2, "web_page"),
            Slot(443, "tls", 0.15, "tls_host", per_host=True),
            Slot(1433, "mssql", 0.05, "mssql"),
        ),
        {"enterprise": 0.18, "hosting": 0.06, "education": 0.1, "residential": 0.01},
        n_models=4,
        windows=(8192, 65535, 64000),
        vendors=("Microsoft",),
    ),
    Family(
        "camera",
        (
            Slot(80, "http", 0.55, "camera_web"),
            Slot(554, "rtsp", 0.5, "rtsp"),
            Slot(_mp(0), "unknown", 0.7, "camera_proto"),
            Slot(_mp(1), "http", 0.35, "camera_web"),
            Slot(443, "tls", 0.15, "tls_model"),
            Slot(23, "telnet", 0.05, "telnet_login"),
        ),
        {"residential": 0.06, "enterprise": 0.05, "education": 0.03, "mobile": 0.04},
        n_models=40,
        model_skew=1.2,
        confinement=0.3,
        n_model_ports=2,
        known_model_ports=((8000, 8200), (37777, 37778), (34567, 34599), (8899, 6036)),
        windows=(5840, 14600, 29200),
        vendors=("Hikvision", "Dahua", "XMEye", "Uniview", "Axis", "Reolink"),
    ),
    Family(
        "nas",
        (
            Slot(_mp(0), "http", 0.8, "nas_web"),
            Slot(_mp(1), "tls", 0.7, "tls_model"),
            Slot(22, "ssh", 0.2, "ssh_openssh"),
            Slot(80, "http", 0.25, "nas_web"),
            Slot(443, "tls", 0.2, "tls_model"),
            Slot(21, "ftp", 0.1, "ftp_server"),
        ),
        {"residential": 0.03, "enterprise": 0.02, "education": 0.03},
        n_models=12,
        model_skew=1.3,
        n_model_ports=2,
        known_model_ports=((5000, 5001), (8080, 8081), (9000, 9443)),
        windows=(29200, 14600),
        vendors=("Synology", "QNAP", "Asustor", "WD", "TerraMaster"),
    ),
    Family(
        "db_dev_server",
        (
            Slot(22, "ssh", 0.8, "ssh_openssh"),
            Slot(3306, "mysql", 0.2, "mysql"),
            Slot(5432, "postgres", 0.15, "postgres"),
            Slot(6379, "redis", 0.15, "redis"),
            Slot(27017, "mongodb", 0.1, "mongodb"),
            Slot(9200, "http", 0.1, "elasticsearch"),
            Slot(3000, "http", 0.1, "dev_http"),
            Slot(8000, "http", 0.1, "dev_http"),
            Slot(8888, "http", 0.08, "dev_http"),
            Slot(9090, "http", 0.08, "dev_http"),
            Slot(6443, "tls", 0.05, "tls_model"),
            Slot(10250, "tls", 0.04, "tls_model"),
        ),
        {"hosting": 0.1, "education": 0.04},
        n_models=6,
        windows=(29200, 64240, 65160),
        vendors=("Linux",),
    ),
    Family(
        "vpn_gateway",
        (
            Slot(443, "tls", 0.7, "tls_model"),
            Slot(_mp(0), "tls", 0.5, "tls_model"),
            Slot(_mp(1), "http", 0.3, "vpn_web"),
            Slot(80, "http", 0.3, "vpn_web"),
            Slot(22, "ssh", 0.15, "ssh_vendor"),
            Slot(1723, "pptp", 0.08, "pptp"),
        ),
        {"enterprise": 0.13, "education": 0.06, "hosting": 0.02},
        n_models=10,
        model_skew=1.1,
        n_model_ports=2,
        known_model_ports=((10443, 541), (4433, 8443), (4443, 6081)),
        windows=(5840, 14600, 65535, 8192),
        vendors=("Fortinet", "SonicWall", "Palo Alto Networks", "Cisco", "Pulse Secure", "WatchGuard"),
    ),
    Family(
        "cisco_rv",
        (
            Slot(60443, "tls", 0.9, "tls_cisco_rv", per_host=True),
            Slot(80, "http", 0.71, "router_login"),
            Slot(443, "tls", 0.25, "tls_cisco_rv", per_host=True),
        ),
        {"enterprise": 0.02, "residential": 0.004},
        presence=0.5,
        windows=(5840,),
        vendors=("Cisco",),
    ),
    Family(
        "media_device",
        (
            Slot(8008, "http", 0.9, "media_http"),
            Slot(8009, "tls", 0.6, "tls_model"),
            Slot(8443, "tls", 0.55, "tls_model"),
            Slot(_mp(0), "http", 0.3, "media_http"),
        ),
        {"residential": 0.04, "mobile": 0.03},
        n_models=8,
        n_model_ports=1,
        known_model_ports=((9000,), (10001,), (1925,)),
        windows=(65535, 14600),
        vendors=("Google", "Roku", "Samsung", "LG", "Android Things"),
    ),
    Family(
        "printer",
        (
            Slot(80, "http", 0.6, "printer_web"),
            Slot(443, "tls", 0.3, "tls_model"),
            Slot(631, "http", 0.4, "ipp"),
            Slot(9100, "unknown", 0.5, "pjl"),
            Slot(515, "unknown", 0.15, "lpd"),
            Slot(21, "ftp", 0.1, "ftp_server"),
            Slot(23, "telnet", 0.08, "telnet_login"),
        ),
        {"enterprise": 0.04, "education": 0.07},
        n_models=15,
        model_skew=1.2,
        windows=(5840, 8192, 14600),
        vendors=("HP", "Brother", "Canon", "Epson", "Xerox", "Kyocera", "Ricoh"),
    ),
    Family(
        "appliance",
        (
            Slot(_mp(0), "http", 0.96, "appliance"),
            Slot(_mp(1), "tls", 0.6, "tls_model"),
            Slot(_mp(2), "unknown", 0.45, "appliance"),
            Slot(_mp(3), "http", 0.35, "appliance"),
            Slot(_mp(4), "unknown", 0.25, "appliance"),
            Slot(_mp(5), "tls", 0.2, "tls_model"),
            Slot(80, "http", 0.2, "appliance"),
            Slot(443, "tls", 0.12, "tls_model"),
        ),
        {"residential": 0.15, "hosting": 0.1, "enterprise": 0.25, "education": 0.2, "mobile": 0.15},
        n_models=16000,
        model_skew=0.6,
        confinement=0.85,
        local_models=3,
        hosts_per_model=1500,
        n_model_ports=6,
        windows=(5840, 14600, 29200, 65535, 8192, 4128, 16384),
    ),
    Family(
        "ics",
        (
            Slot(502, "modbus", 0.6, "modbus"),
            Slot(102, "unknown", 0.3, "s7"),
            Slot(20000, "unknown", 0.15, "dnp3"),
            Slot(44818, "unknown", 0.2, "enip"),
            Slot(80, "http", 0.3, "appliance"),
            Slot(47808, "unknown", 0.1, "bacnet"),
        ),
        {"enterprise": 0.01, "education": 0.01, "mobile": 0.01},
        n_models=6,
        windows=(5840, 2048, 4096),
        vendors=("Siemens", "Schneider Electric", "Rockwell", "Moxa"),
    ),
    Family(
        "mqtt_broker",
        (
            Slot(1883, "mqtt", 0.9, "mqtt"),
            Slot(8883, "tls", 0.4, "tls_model"),
            Slot(8083, "http", 0.2, "dev_http"),
            Slot(22, "ssh", 0.4, "ssh_openssh"),
        ),
        {"hosting": 0.03, "residential": 0.004},
        n_models=3,
        windows=(29200, 64240),
        vendors=("Mosquitto", "EMQX", "HiveMQ"),
    ),
    Family(
        "port_forward",
        (
            Slot(FORWARD_PORT, "ssh", 0.25, "ssh_openssh", std=22, alt=(2222, 22222, 2200, 10022, 2022)),
            Slot(FORWARD_PORT, "http", 0.25, "web_page", std=80, alt=(8080, 8081, 8888, 81, 8000, 8090)),
            Slot(FORWARD_PORT, "rdp", 0.12, "rdp", std=3389, alt=(3390, 33890, 3391, 13389)),
            Slot(FORWARD_PORT, "vnc", 0.08, "vnc", std=5900, alt=(5901, 5902, 5800, 15900)),
            Slot(FORWARD_PORT, "unknown", 0.08, "minecraft", std=25565, alt=(25566, 25575, 25567)),
            Slot(FORWARD_PORT, "http", 0.06, "plex", std=32400, alt=(32401, 32402)),
            Slot(FORWARD_PORT, "tls", 0.1, "tls_host", per_host=True, std=443, alt=(8443, 4443, 10443)),
            Slot(FORWARD_PORT, "ftp", 0.06, "ftp_server", std=21, alt=(2121, 21021)),
        ),
        {"residential": 0.11, "mobile": 0.12, "enterprise": 0.03, "education": 0.02},
        exclusive=True,
        n_models=8,
        windows=(64240, 29200, 65535, 8192),
    ),
    Family(
        "p2p_node",
        (Slot(RANDOM_PORT, "unknown", 1.0, "p2p"),),
        {"residential": 0.012, "mobile": 0.02, "education": 0.005},
        windows=(64240, 65535, 8192),
    ),
    Family(
        "pseudo",
        (Slot(RANDOM_PORT, "http", 1.0, "pseudo"),),
        {"hosting": 0.02, "enterprise": 0.012, "residential": 0.002, "education": 0.01},
        n_models=12,
        pseudo=True,
        windows=(65535, 0x3890, 1024),
        vendors=("tarpit", "middlebox"),
    ),
)

#: Wide alternatives an ISP may configure for its CPE management service instead of 7547.
AS_PORT_CHOICES: tuple[int, ...] = (7547, 30005, 4567, 58000, 8089, 7548, 7170, 51005, 8085, 49152, 5555)
AS_PORT_WEIGHTS: tuple[float, ...] = (0.62, 0.06, 0.06, 0.04, 0.04, 0.04, 0.03, 0.03, 0.03, 0.03, 0.02)

#: Ports that the market favours for non-standard services; they get the head of the tail
#: distribution that model ports are drawn from (the rest follows a hashed ranking of all ports).
POPULAR_ALT_PORTS: tuple[int, ...] = (
    8080,
    8443,
    8000,
    8081,
    8888,
    81,
    82,
    8090,
    9000,
    10000,
    5000,
    5001,
    49152,
    8008,
    8082,
    8088,
    8880,
    9090,
    10443,
    4443,
    2000,
    7080,
    9443,
    8181,
    5005,
    7777,
    9999,
    8001,
    8089,
    8083,
    8020,
    8200,
    50000,
    6000,
    1080,
    3128,
    8118,
    9100,
    9200,
    2082,
    2083,
    2087,
    4000,
    60000,
    5060,
    1900,
    6789,
    9080,
    8800,
)

#: The IANA-assigned port of each protocol, for "services off their assigned port" statistics.
ASSIGNED_PORT: dict[str, int] = {
    "http": 80,
    "tls": 443,
    "ssh": 22,
    "smtp": 25,
    "imap": 143,
    "pop3": 110,
    "ftp": 21,
    "telnet": 23,
    "mysql": 3306,
    "postgres": 5432,
    "redis": 6379,
    "rdp": 3389,
    "vnc": 5900,
    "smb": 445,
    "rtsp": 554,
    "mqtt": 1883,
    "modbus": 502,
    "pptp": 1723,
    "mssql": 1433,
    "mongodb": 27017,
}

#: Protocol codes (uint8 in generated arrays): position in this tuple.
PROTOCOLS: tuple[str, ...] = (
    "http",
    "tls",
    "ssh",
    "smtp",
    "imap",
    "pop3",
    "ftp",
    "telnet",
    "mysql",
    "postgres",
    "redis",
    "rdp",
    "vnc",
    "smb",
    "rtsp",
    "mqtt",
    "modbus",
    "pptp",
    "mssql",
    "mongodb",
    "unknown",
)

#: Most slots a family has (the width of the per-host slot matrix).
MAX_SLOTS = max(len(f.slots) for f in FAMILIES)

FAMILY_INDEX: dict[str, int] = {f.name: i for i, f in enumerate(FAMILIES)}
PSEUDO_FAMILY = FAMILY_INDEX["pseudo"]

#: Ports a pseudo-service host answers on: 11 and more, with a heavy tail (up to a few thousand).
PSEUDO_PORT_COUNTS: tuple[int, ...] = (11, 12, 14, 16, 20, 25, 32, 50, 64, 100, 128, 256, 512, 1000, 2500)
PSEUDO_PORT_WEIGHTS: tuple[float, ...] = (
    0.14,
    0.12,
    0.1,
    0.1,
    0.1,
    0.08,
    0.08,
    0.07,
    0.05,
    0.05,
    0.04,
    0.03,
    0.02,
    0.015,
    0.005,
)
