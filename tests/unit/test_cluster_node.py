"""The test node's pure parts: the cluster DNS's wire format and the pause image archive."""

from __future__ import annotations

import json
import struct
import tarfile
from pathlib import Path

from kev.cluster.dns import answer, parse_question, service_of
from kev.cluster.node import PAUSE_IMAGE, cni_config, kubelet_config, pause_image_archive


def _query(name: str, qtype: int = 1, query_id: int = 0x1234) -> bytes:
    labels = b"".join(bytes([len(part)]) + part.encode() for part in name.split("."))
    return (
        struct.pack("!HHHHHH", query_id, 0x0100, 1, 0, 0, 0) + labels + b"\0" + struct.pack("!HH", qtype, 1)
    )


def test_a_service_name_maps_to_its_namespace_and_name_and_nothing_else_does() -> None:
    assert service_of("kafka.kafka.svc.cluster.local") == ("kafka", "kafka")
    assert service_of("keventing-receiver.keventing.svc.cluster.local") == ("keventing", "keventing-receiver")
    # What a resolver's search list makes of an already qualified name, and other names.
    assert service_of("kafka.kafka.svc.cluster.local.default.svc.cluster.local") is None
    assert service_of("svc.cluster.local") is None
    assert service_of("example.com") is None


def test_an_a_query_for_a_service_is_answered_with_its_cluster_ip() -> None:
    question = parse_question(_query("Kafka.kafka.svc.cluster.local"))
    assert question.name == "kafka.kafka.svc.cluster.local" and question.qtype == 1
    response = answer(question, "10.0.0.42", known=True)
    query_id, flags, _, ancount = struct.unpack("!HHHH", response[:8])
    assert query_id == 0x1234 and flags & 0x8000 and flags & 0x000F == 0 and ancount == 1
    assert response.endswith(bytes([10, 0, 0, 42]))


def test_an_unknown_name_is_nxdomain_and_an_aaaa_query_gets_no_records() -> None:
    unknown = answer(parse_question(_query("nope.default.svc.cluster.local")), None, known=False)
    assert struct.unpack("!H", unknown[2:4])[0] & 0x000F == 3
    aaaa = answer(parse_question(_query("kafka.kafka.svc.cluster.local", qtype=28)), "10.0.0.42", known=True)
    flags, _, ancount = struct.unpack("!HHH", aaaa[2:8])
    assert flags & 0x000F == 0 and ancount == 0


def test_the_pause_image_archive_runs_catatonit_in_pause_mode(tmp_path: Path) -> None:
    binary = tmp_path / "catatonit"
    binary.write_bytes(b"\x7fELF not really")
    archive = pause_image_archive(binary, tmp_path / "pause.tar")
    with tarfile.open(archive) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
        assert manifest[0]["RepoTags"] == [PAUSE_IMAGE]
        config = json.loads(tar.extractfile(manifest[0]["Config"]).read())  # type: ignore[union-attr]
        assert config["config"]["Entrypoint"] == ["/pause", "-P"]
        with tarfile.open(fileobj=tar.extractfile(manifest[0]["Layers"][0])) as layer:
            assert layer.extractfile("pause").read() == binary.read_bytes()  # type: ignore[union-attr]


def test_the_node_keeps_its_files_in_the_state_dir(tmp_path: Path) -> None:
    config = kubelet_config(tmp_path / "c.sock", tmp_path / "logs", tmp_path / "resolv.conf", "10.200.0.1")
    assert config["failCgroupV1"] is False and config["clusterDNS"] == ["10.200.0.1"]
    assert config["podLogsDir"] == str(tmp_path / "logs")
    ipam = cni_config(tmp_path / "ipam")["plugins"][0]["ipam"]  # type: ignore[index]
    assert ipam["dataDir"] == str(tmp_path / "ipam")
