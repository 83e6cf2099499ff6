"""Error classification per errno and operation, and the engine choice given probe results:
pure functions, no privileges."""

from __future__ import annotations

import pytest

from dsrconform import caps, features
from dsrconform.bpf.libbpf import classify_error
from dsrconform.errors import BpfError, ConfigError, FeatureUnavailableError, PrivilegeError
from dsrconform.features import FEATURES, ProbeResult, choose_engine

ROOT_NO_SYS_RESOURCE = 0x1FFFEFFFFFF  # what root holds on a kernel that refuses live frames
ROOT_ALL = 0x1FFFFFFFFFF
UNPRIVILEGED = 0
EPERM, EACCES, EINVAL, ENOENT, EOPNOTSUPP, ENOTSUPP, ENOMEM = 1, 13, 22, 2, 95, 524, 12


def test_the_caps_of_the_refusing_kernel_are_privileged_for_bpf() -> None:
    assert caps.bpf_privileged(ROOT_NO_SYS_RESOURCE)
    assert not caps.has(ROOT_NO_SYS_RESOURCE, caps.CAP_SYS_RESOURCE)
    assert not caps.bpf_privileged(UNPRIVILEGED)
    only_bpf = 1 << caps.CAP_BPF
    assert not caps.bpf_privileged(only_bpf), "CAP_NET_ADMIN is needed as well"
    assert caps.bpf_privileged(only_bpf | 1 << caps.CAP_NET_ADMIN)
    assert caps.effective_caps("Name:\tx\nCapEff:\t000001fffeffffff\n") == ROOT_NO_SYS_RESOURCE


def test_eperm_on_live_frames_as_root_names_the_feature_not_root() -> None:
    err = classify_error(
        EPERM, "live-frames test run of g", op="test-run-live", caps=ROOT_NO_SYS_RESOURCE
    )
    assert type(err) is FeatureUnavailableError
    assert err.feature == "live-frames" and err.errno == EPERM
    assert isinstance(err, BpfError), "callers that fall back on BpfError must catch it"
    text = str(err)
    assert "BPF_F_TEST_XDP_LIVE_FRAMES" in text and "CAP_SYS_RESOURCE" in text
    assert "run as root" not in text and "not a missing root" in text


def test_eperm_without_capabilities_is_a_privilege_error() -> None:
    for op in ("test-run-live", "test-run", "xdp-attach", "tc-attach", "load", ""):
        err = classify_error(EPERM, "x", op=op, caps=UNPRIVILEGED)
        assert type(err) is PrivilegeError, op
        assert "CAP_BPF" in str(err) and "run as root" in str(err)
    assert type(classify_error(EACCES, "x", op="", caps=UNPRIVILEGED)) is PrivilegeError


@pytest.mark.parametrize(
    ("op", "feature"),
    [("test-run", "bpf-test-run"), ("xdp-attach", "xdp-native-veth"), ("tc-attach", "tc-clsact")],
)
def test_eperm_as_root_on_other_operations_names_their_feature(op: str, feature: str) -> None:
    err = classify_error(EPERM, "x", op=op, caps=ROOT_ALL)
    assert isinstance(err, FeatureUnavailableError) and err.feature == feature


def test_unsupported_operations_name_the_feature() -> None:
    err = classify_error(EOPNOTSUPP, "x", op="xdp-attach", caps=ROOT_ALL)
    assert isinstance(err, FeatureUnavailableError) and err.feature == "xdp-native-veth"
    assert "does not support native XDP attach" in str(err)
    err = classify_error(ENOTSUPP, "x", op="test-run-live", caps=ROOT_ALL)
    assert isinstance(err, FeatureUnavailableError) and err.feature == "live-frames"
    # An older kernel rejects the live-frames flag itself with EINVAL.
    err = classify_error(EINVAL, "x", op="test-run-live", caps=ROOT_ALL)
    assert isinstance(err, FeatureUnavailableError) and err.feature == "live-frames"


def test_other_errors_stay_plain_bpf_errors() -> None:
    # EINVAL on a plain test run is a bad input, not a missing feature.
    for err_no, op in ((EINVAL, "test-run"), (ENOENT, ""), (ENOMEM, "load"), (EPERM, "load")):
        err = classify_error(err_no, "x", op=op, caps=ROOT_ALL)
        assert type(err) is BpfError, (err_no, op)
        assert err.errno == err_no
    # A privileged process's EPERM on an operation with no feature says it is not about root.
    assert "kernel's policy refuses it" in str(classify_error(EPERM, "x", op="", caps=ROOT_ALL))


def _results(**ok: bool) -> dict[str, ProbeResult]:
    return {k: ProbeResult(FEATURES[k], v, "works" if v else f"{k} refused") for k, v in ok.items()}


def test_auto_takes_the_best_engine_that_works() -> None:
    got = choose_engine("auto", _results(**{"live-frames": True, "af-packet": True}))
    assert got.engine == "live-frames" and got.why is None
    got = choose_engine("auto", _results(**{"live-frames": False, "af-packet": True}))
    assert got.engine == "af-packet"
    assert got.why == "live-frames: live-frames refused"
    got = choose_engine(
        "auto", _results(**{"live-frames": False, "af-packet": False, "trafgen": True})
    )
    assert got.engine == "trafgen" and got.passed_over[1] == ("af-packet", "af-packet refused")


def test_no_engine_is_an_error_naming_each_one_tried() -> None:
    with pytest.raises(FeatureUnavailableError) as e:
        choose_engine("auto", _results(**{"live-frames": False, "af-packet": False}))
    assert "live-frames: live-frames refused" in str(e.value)
    assert "af-packet: af-packet refused" in str(e.value)
    assert "trafgen: not probed" in str(e.value)
    assert e.value.feature == "live-frames"


def test_a_forced_engine_is_used_or_refused_naming_it() -> None:
    both = _results(**{"live-frames": True, "af-packet": True})
    assert choose_engine("af-packet", both).engine == "af-packet"
    with pytest.raises(FeatureUnavailableError, match="live-frames refused") as e:
        choose_engine("live-frames", _results(**{"live-frames": False}))
    assert e.value.feature == "live-frames"
    with pytest.raises(ConfigError, match="choose auto or"):
        choose_engine("pktgen", both)


def test_disabled_features_probe_as_missing_without_trying(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def boom() -> str:
        raise AssertionError("a disabled feature must not be probed")

    monkeypatch.setitem(features._PROBES, "live-frames", boom)
    monkeypatch.setenv(features.DISABLE_ENV, "live-frames")
    res = features.probe("live-frames", fresh=True)
    assert not res.ok and res.detail == f"disabled by {features.DISABLE_ENV}"
    assert res.reason.startswith("XDP live frames")
    monkeypatch.setenv(features.DISABLE_ENV, "live-frames,warp-drive")
    with pytest.raises(ConfigError, match="warp-drive"):
        features.probe("live-frames")


def test_a_probe_that_fails_is_a_result_never_an_exception(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refused() -> str:
        raise FeatureUnavailableError("the kernel refuses it", feature="btf")

    def crashed() -> str:
        raise OSError(2, "No such file or directory")

    monkeypatch.delenv(features.DISABLE_ENV, raising=False)
    monkeypatch.setitem(features._PROBES, "btf", refused)
    monkeypatch.setitem(features._PROBES, "cgroup-cpu", crashed)
    btf = features.probe("btf", fresh=True)
    assert (btf.ok, btf.detail) == (False, "the kernel refuses it")
    cg = features.probe("cgroup-cpu", fresh=True)
    assert not cg.ok and cg.detail.startswith("FileNotFoundError")
    assert cg.as_dict()["when_missing"] == FEATURES["cgroup-cpu"].when_missing
    features.clear_cache()


def test_every_feature_says_who_uses_it_and_what_its_absence_costs() -> None:
    for f in FEATURES.values():
        assert f.used_by and f.when_missing, f.key
    assert set(features.FLOOD_ENGINES) <= FEATURES.keys()


def test_probed_lists_what_this_process_probed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(features.DISABLE_ENV, raising=False)
    monkeypatch.setitem(features._PROBES, "btf", lambda: "a BTF file")
    features.clear_cache()
    assert features.probed() == {}
    features.probe("btf")
    assert features.probed() == {"btf": {"ok": True, "detail": "a BTF file"}}
    features.clear_cache()
