import pytest

from mrfviewer.io.names import safe_name


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("../../etc/x", "etc_x"),
        ("DOE^JOHN", "DOE_JOHN"),
        ("a/b\\c:d*e?f", "a_b_c_d_e_f"),
        ("\x00\x1b[31mred", "31mred"),
        ("..", "unnamed"),
        ("", "unnamed"),
        ("CON", "unnamed"),
        ("Müller Knie", "Muller_Knie"),
    ],
)
def test_safe_names(text, expected):
    assert safe_name(text) == expected


def test_length_is_bounded():
    assert len(safe_name("x" * 500)) == 64
