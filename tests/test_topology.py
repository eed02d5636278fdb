import pytest

from treerpo.tree import topology


def test_roundtrip():
    uid = topology.encode("abc#d", [0, 3, 1], [4, 9, 12])
    assert uid == "abc#d#tree1#0.3.1#4.9.12"
    t = topology.decode(uid)
    assert (t.prompt_uid, t.path, t.ends) == ("abc#d", (0, 3, 1), (4, 9, 12))


@pytest.mark.parametrize(
    "uid, match",
    [
        ("plainuid", "no tree topology"),
        ("p#tree9#0#4", "unknown topology format 'tree9'"),
        ("p#tree1#0.x#4.5", "must be integers"),
        ("p#tree1#0.1#4", "2 levels but 1 ends"),
        ("p#tree1#0.1#4.4", "strictly increasing"),
        ("p#tree1#0#0", "strictly increasing"),
        ("#tree1#0#3", "empty prompt uid"),
        ("p#tree1#-1#3", "negative"),
    ],
)
def test_rejects_with_uid_in_message(uid, match):
    with pytest.raises(ValueError, match=match) as e:
        topology.decode(uid)
    assert repr(uid) in str(e.value) or uid in str(e.value)


def test_padding_uid():
    assert topology.is_padding_uid("pad0123abcd")
    assert not topology.is_padding_uid("padded-prompt#tree1#0#3")
    assert not topology.is_padding_uid("abc")
