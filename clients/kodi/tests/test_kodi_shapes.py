"""The shape checks themselves reject what the contract forbids (so that the
end-to-end tests that use them can fail)."""

import copy

import pytest

from shapes import assert_item_shape, assert_state_shape

ITEM = {"title": "clip.mp4", "label": "clip.mp4", "mediatype": "video", "showtitle": None, "season": None,
        "episode": None, "year": None, "duration": 5, "file": "/media/clip.mp4",
        "video": {"width": 640, "height": 360, "fps": 25.0, "aspect": 1.78, "codec": "h264"}}


def test_the_documented_examples_pass():
    assert_item_shape(ITEM)
    assert_item_shape(dict(ITEM, video=None))
    assert_state_shape({"state": "playing", "file": "/media/clip.mp4", "speed": 1}, "playing")
    assert_state_shape({"state": "stopped", "file": None, "speed": 0}, "stopped")


@pytest.mark.parametrize("change", [
    lambda i: i.pop("showtitle"),
    lambda i: i.update(extra=1),
    lambda i: i.update(season=-1),
    lambda i: i.update(year=0),
    lambda i: i.update(duration="5"),
    lambda i: i.update(file=None),
    lambda i: i["video"].update(width="640"),
    lambda i: i["video"].update(fps=25),
    lambda i: i["video"].update(aspect=1.7777),
    lambda i: i["video"].update(codec="H264"),
    lambda i: i["video"].pop("codec"),
])
def test_item_shape_rejects(change):
    item = copy.deepcopy(ITEM)
    change(item)
    with pytest.raises(AssertionError):
        assert_item_shape(item)


@pytest.mark.parametrize("value", [
    {"state": "playing", "file": "/f", "speed": 1, "extra": 0},
    {"state": "buffering", "file": "/f", "speed": 1},
    {"state": "stopped", "file": "/f", "speed": 0},
    {"state": "paused", "file": "/f", "speed": 1},
    {"state": "playing", "file": None, "speed": 1},
    {"state": "playing", "file": "/f", "speed": True},
])
def test_state_shape_rejects(value):
    with pytest.raises(AssertionError):
        assert_state_shape(value)
