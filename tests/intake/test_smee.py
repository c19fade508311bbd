"""smee.io's channel messages: the headers, and GitHub's body bytes cut out of JavaScript's
text exactly (bot/intake/smee.py). The expected texts were written by node 20's
JSON.stringify."""

from __future__ import annotations

import json

import pytest

from bot.intake.smee import MalformedMessage, parse_message


def test_headers_are_the_string_members_and_the_body_is_cut_out_verbatim() -> None:
    data = (
        '{"host":"smee.io","X-GitHub-Event":"issues","x-github-delivery":"d-1",'
        '"set-cookie":["a","b"],"body":{"e":1e-7,"f":0.00001,"big":1e+21,"t":"é\u2028"},'
        '"query":{"token":"x"},"timestamp":1733450000000}'
    )
    message = parse_message(data)
    assert message.headers == {
        "host": "smee.io",
        "x-github-event": "issues",
        "x-github-delivery": "d-1",
        "content-type": "application/json",  # as smee-client posts it
    }
    # Numbers stay as JavaScript wrote them (Python would write 1e-07 and 1e-05).
    assert message.body == '{"e":1e-7,"f":0.00001,"big":1e+21,"t":"é\u2028"}'.encode()


def test_unicode_escapes_get_githubs_upper_case_hex_and_nothing_else_changes() -> None:
    # JSON.stringify wrote "\\u001b" for ESC; `\\\\u001b` is a backslash, then "u001b".
    data = r'{"body":{"a":"\u001b[1m\u001f","b":"\\u001b","c":"\"\\\/\b\f\n\r\t"}}'
    assert parse_message(data).body == (
        rb'{"a":"\u001B[1m\u001F","b":"\\u001b","c":"\"\\\/\b\f\n\r\t"}'
    )


def test_a_raw_body_is_used_as_it_is_when_the_channel_carries_one() -> None:
    raw = '{\n  "zen": "Keep it logically awesome."\n}\n'
    for member in ("rawBody", "rawdata"):
        data = (
            '{"x-github-event":"ping","body":{"zen":"x"},'
            + f"{json.dumps(member)}:{json.dumps(raw)}}}"
        )
        message = parse_message(data)
        assert message.body == raw.encode()
        assert member.lower() not in message.headers


def test_whitespace_between_members_is_allowed_and_a_repeated_name_keeps_the_last() -> None:
    message = parse_message(' { "body" : { "a" : 1 } ,\n "body":{"b":2} , "x":"y" } ')
    assert message.body == b'{"b":2}'
    assert message.headers["x"] == "y"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ("", "not a JSON object"),
        ("[]", "not a JSON object"),
        ('{"body":{}', "expected ',' or '}' after a member"),
        ('{"body" {}}', "expected ':' after a member name"),
        ("{1:2}", "a member name is not a string"),
        ('{"body":NaN}', "NaN is not JSON"),
        ('{"body":{}} trailing', "text after the JSON object"),
        ('{"body":{"a":}}', "not JSON"),
        ('{"x-github-event":"issues"}', "the message has no body"),
    ],
)
def test_what_is_not_smees_message_is_refused(data: str, reason: str) -> None:
    with pytest.raises(MalformedMessage, match=reason):
        parse_message(data)
