"""edgebit.streaming.TextStream: what `edgebit generate` prints as tokens arrive, and where it stops."""

from edgebit.streaming import TextStream

PIECES = ["A", " list", " is", " an", " integer", " object", ",", " a"]


def stream(stops, pieces=PIECES) -> tuple[str, list[str]]:
    writes: list[str] = []
    text = TextStream(lambda ids: "".join(pieces[i] for i in ids), writes.append, stops)
    for index in range(len(pieces)):
        if text.add(index):
            break
    text.finish()
    return "".join(writes), writes


def test_a_stop_string_spanning_tokens_is_never_partly_printed():
    assert stream(("object,",))[0] == "A list is an integer "  # " object" waited for the ","


def test_text_held_for_a_stop_string_that_does_not_come_is_printed_at_the_end():
    text, writes = stream(("object!",))
    assert text == "A list is an integer object, a" and writes[-2:] == ["object,", " a"]


def test_without_stop_strings_every_token_is_printed_as_it_comes():
    assert stream(())[1] == PIECES


def test_half_a_character_waits_for_its_other_half():
    pieces = ["caf", "\ufffd", "é!"]  # what a byte-level decode gives for a split UTF-8 character
    decode = lambda ids: "".join(pieces[i] for i in ids).replace("\ufffdé", "é") if len(ids) == 3 else \
        "".join(pieces[i] for i in ids)
    writes: list[str] = []
    text = TextStream(decode, writes.append)
    for index in range(3):
        text.add(index)
    text.finish()
    assert "".join(writes) == "café!" and "\ufffd" not in "".join(writes)
