"""Answer extraction: a table of awkward answers, each with one reading or an explicit none."""
import pytest

from sf2t_jax.eval import extract

ACTIONS = ("Moving red star from left to right", "Pushing red star from left to right",
           "Putting red star onto blue square", "Turning red star upside down")
YES_NO = ("no", "yes")
COUNTS = ("5", "6", "7", "8")
FRAMES = ("frame 2", "frame 4", "frame 1", "frame 3")

# (answer, options, expected letter or None for unparsable)
CHOICES = [
    ("The answer is B.", ACTIONS, "B"),
    ("Answer: C", ACTIONS, "C"),
    ("(c)", ACTIONS, "C"),
    ("b) yes", YES_NO, "B"),  # an explicit letter wins over the text after it
    ("D. Turning red star upside down", ACTIONS, "D"),
    ("A", ACTIONS, "A"),
    ("a.", ACTIONS, "A"),
    ("A is correct.", ACTIONS, "A"),
    ("I would pick (B) here", ACTIONS, "B"),
    ("A person moves the red star to the right.", ACTIONS, None),  # the article, not option A
    ("Answer: A person moves it", ACTIONS, None),
    ("the answer is a person", ACTIONS, None),
    ("B or C", ACTIONS, None),  # two letters: no single reading
    ("", ACTIONS, None),
    ("E", ACTIONS, None),
    ("C", YES_NO, None),  # a letter that names no option
    ("Pushing red star from left to right.", ACTIONS, "B"),  # option text
    ("The video shows putting red star onto blue square", ACTIONS, "C"),  # option text inside
    ("Someone dances.", ACTIONS, None),
    ("no.", YES_NO, "A"),
    ("Yes!", YES_NO, "B"),
    ("No, they are already in order.", YES_NO, "A"),
    ("yes and no", YES_NO, None),
    ("7", COUNTS, "C"),
    ("There are seven frames.", COUNTS, "C"),
    ("6 or 7", COUNTS, None),
    ("3", COUNTS, None),  # a number that is not an option
    ("Frame 3.", FRAMES, "D"),
    ("frame 1 happens earliest", FRAMES, "C"),
    ("frame 3 comes before frame 1", FRAMES, None),
]


@pytest.mark.parametrize("text,options,expected", CHOICES)
def test_choice(text, options, expected):
    got = extract.choice(text, options)
    assert got.value == expected, (text, got)
    assert got.parsed == (expected is not None)
    assert got.reason  # every outcome says why


@pytest.mark.parametrize("text,expected", [
    ("3,1,2", (3, 1, 2)), ("3 1 2", (3, 1, 2)), ("3, 1, 2.", (3, 1, 2)),
    ("Frame 3, frame 1, frame 2", (3, 1, 2)), ("3 -> 1 -> 2", (3, 1, 2)),
    ("The chronological order of the 3 frames is 3, 1, 2.", (3, 1, 2)),
    ("1, 2, 2", None), ("3, 1", None), ("1, 2, 3, 4", None), ("I cannot tell", None),
])
def test_permutation(text, expected):
    assert extract.permutation(text, 3).value == expected


@pytest.mark.parametrize("text,expected", [
    ("frames 3-5", (3, 5)), ("Frame 3 to frame 5", (3, 5)), ("frames 3 to 9", (3, 9)),
    ("frames 3 through 5", (3, 5)), ("frame 4", (4, 4)), ("It appears in frame 4.", (4, 4)),
    ("frames 5-3", None), ("frames 2-3 and 5-6", None), ("frames 3 and 5", None), ("nowhere", None),
])
def test_span(text, expected):
    assert extract.span(text).value == expected


@pytest.mark.parametrize("text,expected", [
    ("top-left", "top left"), ("Upper left corner.", "top left"), ("centre", "center"),
    ("The middle right cell", "middle right"), ("bottom center", "bottom center"),
    ("lower right", "bottom right"), ("top left or bottom right", None), ("nothing differs", None),
])
def test_region(text, expected):
    assert extract.region(text).value == expected


@pytest.mark.parametrize("text,expected", [
    ("no.", "no"), ("Yes!", "yes"), ("YES", "yes"), ("Nope", None), ("yes, no", None), ("nothing", None),
])
def test_yes_no(text, expected):
    assert extract.yes_no(text).value == expected


def test_region_choice_uses_region_reading():
    options = ("top left", "center", "bottom right")
    assert extract.choice("The upper-left region", options).value == "A"
    assert extract.choice("centre", options).value == "B"
