"""Who is who across cuts: each person's own mouths stay on that person (engine/identity.py)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import media_path
from media_helpers import write_frames

from openlipsync.engine import GenerateRequest
from openlipsync.engine.identity import SAME_PERSON, PeopleWatch, group_stretches
from openlipsync.engine.pipeline import planned
from openlipsync.engine.run_state import RunState
from openlipsync.engine.tracking import track_video
from openlipsync.media.video import VideoReader

SHOT = 75  # frames of each GRID clip


def _frames(relative: str) -> list[np.ndarray]:
    with VideoReader(media_path(relative)) as reader:
        return [cv2.resize(frame, (360, 288), interpolation=cv2.INTER_AREA) for frame in reader]


@pytest.fixture(scope="module")
def interview(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two GRID speakers cutting back and forth (A B A B): the clean-shaven one and the one
    with a moustache, on the same backdrop, as an interview's shot / reverse shot."""
    a, b = _frames("video/grid_bbaf2n.mpg"), _frames("video/grid_swiz3n.mpg")
    assert len(a) == len(b) == SHOT
    return write_frames(tmp_path_factory.mktemp("identity") / "interview.mp4", a + b + a + b)


def _driven(video: Path, name: str, options: dict | None = None) -> GenerateRequest:
    """`video` driven by JFK's speech (11 s), cut to the shorter; the output beside it."""
    speech = media_path("speech/jfk_inaugural.flac")
    out = video.with_name(f"{name}.mp4")
    return GenerateRequest(video, speech, out, sync_mode="cut_off", options=options or {})


def _people(frames: list[np.ndarray], cuts: list[int]) -> np.ndarray | None:
    """The watch fed as the analysis feeds it: its box asked for, then the frame shown."""
    track = track_video(frames)
    watch = PeopleWatch(25.0, cuts)
    for index, frame in enumerate(frames):
        landmarks = track.landmarks[index] if track.present[index] else None
        watch.source_box(index, landmarks)
        watch.observe(index, frame, landmarks)
    return watch.people(len(frames))


def test_two_people_cutting_back_and_forth_are_told_apart(interview: Path) -> None:
    with VideoReader(interview) as reader:
        frames = list(reader)
    people = _people(frames, [SHOT, 2 * SHOT, 3 * SHOT])
    assert people is not None
    shots = [set(people[start : start + SHOT].tolist()) for start in range(0, 4 * SHOT, SHOT)]
    assert all(len(shot) == 1 for shot in shots), shots
    a, b, a_again, b_again = (shot.pop() for shot in shots)
    assert a == a_again and b == b_again and a != b


def test_a_plainly_known_face_is_described_once(
    interview: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each 3 s shot is sampled twice; each shot's first sample is 0.2 from the same man's in
    his other shot, so no second sample is described: 4 descriptors, not 8 (70 ms each)."""
    import openlipsync.engine.identity as identity

    described = []
    real = identity.describe
    monkeypatch.setattr(identity, "describe", lambda face: described.append(1) or real(face))
    with VideoReader(interview) as reader:
        frames = list(reader)
    people = _people(frames, [SHOT, 2 * SHOT, 3 * SHOT])
    assert people is not None and len(set(people.tolist())) == 2
    assert len(described) == 4


def test_one_person_across_jump_cuts_is_one_person() -> None:
    """A vlog's jump cuts: the same woman, punched in and out, grimacing, a hand at her face."""
    with VideoReader(media_path("video/pexels_woman_expressions.mp4")) as reader:
        source = list(reader)
    height, width = source[0].shape[:2]

    def punched_in(frame: np.ndarray, zoom: float) -> np.ndarray:
        h, w = int(height / zoom), int(width / zoom)
        x0, y0 = (width - w) // 2, max(0, int(0.4 * height - h / 2))
        crop = frame[y0 : y0 + h, x0 : x0 + w]
        return cv2.resize(crop, (width, height), interpolation=cv2.INTER_AREA)

    parts = [(0, 50, 1.0), (120, 170, 1.35), (60, 110, 1.0), (180, 230, 1.2)]
    frames = [punched_in(f, zoom) for a, b, zoom in parts for f in source[a:b]]
    people = _people(frames, [50, 100, 150])
    assert people is not None  # four stretches were looked at...
    assert set(people.tolist()) == {0}  # ...and are one person


def test_a_single_shot_is_not_looked_at() -> None:
    frames = _frames("video/grid_bbaf2n.mpg")
    assert _people(frames, []) is None


@pytest.mark.parametrize("options", [{}, {"active_speaker_detection": {"auto_detect": True}}])
def test_no_frame_shows_the_other_persons_mouth(interview: Path, options: dict) -> None:
    """Before identities, 11 of the 154 drawn frames of this plan took the other man's mouth
    (his moustache pasted under the clean-shaven one's nose)."""
    request = _driven(interview, "out", options)
    with planned(request, RunState()) as plan:
        drawn, fading = plan.look.renderer.shown_sources()
        shown = plan.timeline.src_index
    person = lambda frames: (frames // SHOT) % 2  # noqa: E731 - A B A B
    assert (drawn >= 0).sum() > 100
    for used in (drawn, fading):
        where = used >= 0
        assert (person(used[where]) == person(shown[where])).all()


def test_groups_follow_the_mean_descriptor_not_the_order() -> None:
    rng = np.random.default_rng(7)

    def away(point: np.ndarray, distance: float) -> np.ndarray:
        step = rng.normal(size=point.shape)
        return point + step * distance / np.linalg.norm(step)

    first = rng.normal(size=128) * 0.05
    centres = [first, away(first, 0.8)]  # two people, 0.8 apart (dlib: 0.65 and more)
    # Each sample 0.4 from its person: two of one person's samples are about 0.57 apart, more
    # than SAME_PERSON; their means are not.
    stretches = [[away(centres[p], 0.4) for _ in range(2)] for p in (0, 1, 0, 1, 0)] + [[]]
    for order in (range(6), [5, 4, 3, 2, 1, 0], [2, 0, 5, 1, 4, 3]):
        order = list(order)
        people = group_stretches([stretches[i] for i in order], SAME_PERSON)
        by_stretch = dict(zip(order, people.tolist(), strict=True))
        assert by_stretch[0] == by_stretch[2] == by_stretch[4]
        assert by_stretch[1] == by_stretch[3] != by_stretch[0]
        assert by_stretch[5] not in {by_stretch[0], by_stretch[1]}  # no sample: on its own


def test_a_switch_never_fades_from_another_persons_mouth() -> None:
    """After a jump between library sequences the old one fades out over two frames, carried
    on by its next source frames: never across people, in either step."""
    from openlipsync.engine.render import _switch_fades

    lib_src = np.arange(10)
    choice = np.array([0, 1, 2, 7, 8, 9])  # a jump from source frame 2 to 7
    ghost, weight = _switch_fades(choice, lib_src)
    assert ghost.tolist() == [-1, -1, -1, 3, 4, -1] and weight[3] > weight[4] > 0
    person = np.array([0, 0, 0, 0, 1, 1, 1, 0, 0, 0])  # frames 4-6: someone else
    ghost, _ = _switch_fades(choice, lib_src, person)
    assert ghost.tolist() == [-1, -1, -1, 3, 3, -1]  # held at 3, not carried on to 4
    person = np.array([0, 0, 0, 0, 0, 0, 0, 1, 1, 1])  # the jump itself is to someone else
    ghost, _ = _switch_fades(choice, lib_src, person)
    assert (ghost == -1).all()
    person = np.array([0, 0, 0, 0, 0, 0, 0, 0, 1, 1])  # frame 8: a cut to someone else
    ghost, _ = _switch_fades(choice, lib_src, person)
    assert ghost.tolist() == [-1, -1, -1, 3, -1, -1]  # the fade stops at the cut


def test_each_person_is_planned_on_their_own_mouth(interview: Path) -> None:
    """Their mouths differ by more than speech moves them (width 0.59 and 0.46 eye distances;
    one opens about half as far as the other to speak). Learnt together, the moustached man's
    closed lips were planned at the other's 0.59, 27 % wider than his own, on every frame, and
    the other man opened as far as the moustached one (his output opening 1.7 times what it
    is when he is lip-synced alone)."""
    from openlipsync.engine.motion import _neutral_and_span
    from openlipsync.engine.mouth import mouth_shape

    own = {}
    for person, clip in enumerate(("video/grid_bbaf2n.mpg", "video/grid_swiz3n.mpg")):
        track = track_video(_frames(clip))
        own[person] = _neutral_and_span(mouth_shape(track.landmarks[track.present]))[0]
    request = _driven(interview, "own")
    with planned(request, RunState()) as plan:
        targets = plan.look.renderer.targets.copy()
        person = (plan.timeline.src_index // SHOT) % 2
    closed = targets[:, 0] < 0.03  # the plan's pauses and closures
    for who in (0, 1):
        mine = closed & (person == who)
        assert mine.sum() > 30
        jaw, width = np.median(targets[mine, 1:], axis=0)
        assert abs(width - own[who][2]) < 0.03, (who, width, own[who])
        assert abs(jaw - own[who][1]) < 0.03, (who, jaw, own[who])
    wide = [np.percentile(targets[person == who, 0], 90) for who in (0, 1)]
    assert wide[0] < 0.65 * wide[1], wide  # measured: 0.087 and 0.176 (before: 0.185, 0.170)


def test_each_person_only_for_several_people_and_back_again() -> None:
    from openlipsync.engine.motion import each_person

    rng = np.random.default_rng(3)
    shapes = np.column_stack(
        [rng.uniform(0, 0.2, 200), rng.normal(0.8, 0.02, 200), rng.normal(0.5, 0.02, 200)]
    ).astype(np.float32)
    assert each_person(shapes, None) is None
    assert each_person(shapes, np.zeros(200, np.int64)) is None
    people = np.repeat([0, 1, 2], [100, 90, 10])  # the third: too few frames to read
    shapes[people == 1, 0] *= 2  # opens twice as far
    shapes[people == 1, 2] += 0.1  # a wider mouth
    each = each_person(shapes, people)
    assert each is not None
    assert each.neutral[people == 1, 2].mean() - each.neutral[people == 0, 2].mean() == (
        pytest.approx(0.1, abs=0.02)
    )
    assert each.span[people == 1, 0].mean() / each.span[people == 0, 0].mean() == (
        pytest.approx(2.0, rel=0.15)
    )
    assert (each.neutral[people == 2] == each.common_neutral).all()  # everyone's for them
    common = each.to_common(shapes)
    for column in (0, 2):  # on the common scale the two people look alike
        ranges = [np.ptp(common[people == p, column]) for p in (0, 1)]
        assert ranges[1] == pytest.approx(ranges[0], rel=0.2)
    frames = np.arange(200)
    assert np.allclose(each.to_own(common, frames), shapes, atol=1e-5)


def test_a_track_that_jumps_to_another_face_in_the_same_shot_is_split() -> None:
    """Two people side by side in one shot; the track follows the left one, then (as a face
    tracker may after a re-detection) the right one, with no cut and no frame lost."""
    left, right = _frames("video/grid_bbaf2n.mpg"), _frames("video/grid_swiz3n.mpg")
    frames = [np.hstack([a, b]) for a, b in zip(left, right, strict=True)]
    tracks = [track_video(clip) for clip in (left, right)]
    assert all(track.present.all() for track in tracks)
    shift = np.array([left[0].shape[1], 0], np.float32)
    watch = PeopleWatch(25.0, [])
    for index, frame in enumerate(frames):
        landmarks = tracks[0].landmarks[index] if index < 40 else tracks[1].landmarks[index] + shift
        watch.source_box(index, landmarks)
        watch.observe(index, frame, landmarks)
    assert watch.starts == [0, 40]
    people = watch.people(len(frames))
    assert people is not None and people[0] != people[-1]


@pytest.mark.parametrize("options", [{}, {"occlusion_detection_enabled": True}])
def test_both_people_are_lip_synced_on_every_frame(interview: Path, options: dict) -> None:
    """Whether a mouth is covered is judged by its lips' contrast against the person's own:
    against the clean-shaven man's, the moustached man's lips read as covered, and 115 of his
    125 frames kept their own mouth, speaking the source's words (all of them with occlusion
    detection on, as sync-3 always has it)."""
    request = _driven(interview, "both", options)
    with planned(request, RunState()) as plan:
        drawn, _ = plan.look.renderer.shown_sources()
        shown = plan.timeline.src_index
        visibility = plan.look.visibility
    person = (shown // SHOT) % 2
    assert (visibility is not None) == bool(options)
    for who in (0, 1):
        mine = person == who
        assert (drawn[mine] >= 0).mean() > 0.95, who
        if visibility is not None:
            assert visibility[shown[mine]].mean() > 0.9, who


def test_lip_thickness_is_unusual_or_not_for_its_own_person() -> None:
    """Full lips are one person's typical and another's pout: each entry is costed against
    its own person's median."""
    from types import SimpleNamespace

    from openlipsync.engine.render import _thickness_cost

    thin, full = [0.18, 0.20, 0.22], [0.34, 0.36, 0.38]
    outer = np.array(thin + full, np.float32)
    shapes = np.zeros((6, 3), np.float32)  # all closed: thickness = outer height
    lib = SimpleNamespace(shapes=shapes, outer=outer, count=6)
    pooled = _thickness_cost(lib)
    own = _thickness_cost(lib, np.array([0, 0, 0, 1, 1, 1]))
    assert pooled[1] > 0.5 * pooled.max() and pooled[4] > 0.5 * pooled.max()
    assert own[1] == own[4] == 0  # each person's typical lips
    assert own.max() < 0.2 * pooled.max()


@pytest.fixture(scope="module")
def dialogue(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """bbaf2n speaks (his own 3 s), a reaction shot of lbax4n listening (his still last second,
    bounced to 2 s) while another voice goes on (pwij3p's), bbaf2n speaks again."""
    from bench.quality import Clip, read_audio, write_video

    speaker, listener = _frames("video/grid_bbaf2n.mpg"), _frames("video/grid_lbax4n.mpg")
    still = listener[51:] + listener[51:][::-1]
    own = read_audio(media_path("video/grid_bbaf2n.mpg"))
    other = read_audio(media_path("video/grid_pwij3p.mpg"))
    rate = own.sample_rate
    voice_on = other.samples[int(0.4 * rate) : int(0.4 * rate) + len(still) * rate // 25]
    sound = np.concatenate([own.samples[: SHOT * rate // 25], voice_on, own.samples])
    frames = speaker + still + speaker
    path = tmp_path_factory.mktemp("dialogue") / "dialogue.mp4"
    return write_video(path, frames, 25.0, Clip(sound[: len(frames) * rate // 25], rate))


@pytest.mark.parametrize("auto_detect", [True, False])
def test_auto_detect_leaves_a_listener_alone(dialogue: Path, auto_detect: bool) -> None:
    """With auto_detect the service lip-syncs only who speaks (spec section 11): the reaction
    shot keeps its still mouth while the dub's lines play; both shots of the speaker are
    lip-synced. Without it the tracked face is lip-synced wherever it is."""
    options = {"active_speaker_detection": {"auto_detect": True}} if auto_detect else {}
    request = _driven(dialogue, f"auto_{auto_detect}", options)
    with planned(request, RunState()) as plan:
        drawn, _ = plan.look.renderer.shown_sources()
        shown = plan.timeline.src_index
    reaction = (shown >= SHOT) & (shown < SHOT + 48)
    speaking = ~reaction
    assert (drawn[speaking] >= 0).mean() > 0.9
    if auto_detect:
        assert (drawn[reaction] < 0).all()
    else:
        assert (drawn[reaction] >= 0).mean() > 0.9


@pytest.fixture(scope="module")
def two_shot_turns(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A podcast two-shot, one shot: bbaf2n (left) speaks his own 3 s while pwij3p (right)
    listens, still; then pwij3p speaks his while bbaf2n is still."""
    from bench.quality import Clip, read_audio, write_video

    left, right = _frames("video/grid_bbaf2n.mpg"), _frames("video/grid_pwij3p.mpg")
    frames = [np.hstack([frame, right[0]]) for frame in left]
    frames += [np.hstack([left[-1], frame]) for frame in right]
    sounds = [
        read_audio(media_path(f"video/{name}.mpg")) for name in ("grid_bbaf2n", "grid_pwij3p")
    ]
    rate = sounds[0].sample_rate
    sound = np.concatenate([clip.samples[: SHOT * rate // 25] for clip in sounds])
    path = tmp_path_factory.mktemp("turns") / "two_shot.mp4"
    return write_video(path, frames, 25.0, Clip(sound, rate))


def test_auto_detect_lip_syncs_each_person_of_a_two_shot_in_their_turn(
    two_shot_turns: Path,
) -> None:
    """Each person's turn lip-syncs them, with their own mouths (the turns are two stretches
    of two people), and the other keeps their still mouth."""
    options = {"active_speaker_detection": {"auto_detect": True}}
    with planned(_driven(two_shot_turns, "turns", options), RunState()) as plan:
        eyes_x = plan.look.source_track.landmarks[:, [33, 263], 0].mean(axis=1)
        drawn, _ = plan.look.renderer.shown_sources()
        shown = plan.timeline.src_index
    first, second = slice(10, 60), slice(90, 140)
    assert (eyes_x[first] < 360).all() and (eyes_x[second] > 360).all()
    switch = int(np.argmax(eyes_x > 360))  # where the right one's turn begins
    for turn, own in ((first, lambda s: s < switch), (second, lambda s: s >= switch)):
        mouths = drawn[turn][drawn[turn] >= 0]
        assert len(mouths) > 0.5 * len(drawn[turn]) and own(mouths).all(), (turn, mouths)
    assert (shown == np.arange(len(shown))).all()


def test_auto_detect_decodes_once_when_the_clip_is_kept(
    two_shot_turns: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Choosing a speaker reads the source twice (every face, then the chosen face's mouths):
    a clip that fits media/kept.py's budget is decoded once, and planned exactly as when it
    is decoded again."""
    from openlipsync.engine import analysis
    from openlipsync.media import kept

    opened: list[Path] = []

    class CountedReader(VideoReader):
        def __init__(self, path: Path, *args: object, **kwargs: object) -> None:
            opened.append(path)
            super().__init__(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(analysis, "VideoReader", CountedReader)
    options = {"active_speaker_detection": {"auto_detect": True}}
    plans = []
    for budget in (0, kept.KEPT_BYTES):
        monkeypatch.setattr(kept, "KEPT_BYTES", budget)
        opened.clear()
        request = _driven(two_shot_turns, f"kept_{budget}", options)
        with planned(request, RunState(), keep_frames=True) as plan:
            drawn, _ = plan.look.renderer.shown_sources()
            plans.append((drawn, plan.look.source_track.landmarks.copy(), len(opened)))
    (drawn_0, track_0, reads_0), (drawn_1, track_1, reads_1) = plans
    assert (reads_0, reads_1) == (2, 1)
    assert np.array_equal(drawn_0, drawn_1) and np.array_equal(track_0, track_1)
