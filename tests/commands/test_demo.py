"""`icpt demo` end to end on a tiny stand-in of the embedded default (untrained, so only the flow is checked)."""

import json
import re
import shutil

from PIL import Image

from icpt.commands import demo
from modeling_icpt import ICPTForConditionalGeneration
from processing_icpt import ICPTProcessor


def test_demo_runs_end_to_end(tiny_backbone_dirs, tmp_path, capsys):
    backbone = tmp_path / "backbone"
    shutil.copytree(tiny_backbone_dirs["llava"], backbone)
    (backbone / "world.json").write_text(json.dumps({"seed": 0, "num_identities": 100}))
    model = ICPTForConditionalGeneration.from_backbone(backbone, max_prompt_length=4, projector_layers=1)
    model.save_pretrained(tmp_path / "projector")
    ICPTProcessor.from_backbone(backbone, max_prompt_length=4).save_pretrained(tmp_path / "projector")

    scores = demo.main(["--projector", str(tmp_path / "projector"), "--backbone", str(backbone),
                        "--output", str(tmp_path / "demo.png"), "--eval-episodes", "4", "--task-episodes", "2"])
    assert scores == 0
    printed = capsys.readouterr().out
    assert printed.count("prompt tokens, added in") == 3
    # two recognition questions per concept, then a caption, a position and an either/or question, with the truth
    assert printed.count("\n      -> ") == 9 and printed.count("Can you see") == 6
    assert "Write a short caption for this photo that names any of <ayo>, <bix>, <cuz>" in printed
    assert "on the left or on the right" in printed and re.search(r"Is <ayo> \w+ or \w+\?", printed)
    # either/or questions are answered with the more likely of their options, beside the generated words
    assert re.search(r"-> the more likely option: on the (left|right) \(generated: '.*'\)   \[on the (left|right)\]",
                     printed)
    assert len(re.findall(r"-> the more likely option: (\w+) \(generated", printed)) == 1
    assert re.search(r"-> .*   \[a photo of <\w+> and <\w+>, from left to right\.\]", printed)
    assert "Scoring 10 held-out episodes (4 recognition, 2 of each other task)" in printed
    assert "95 % bootstrap interval" in printed
    # an untrained stand-in beats chance on nothing: every task is reported as not measurable, none is scored
    assert printed.count("not measurable on this backbone") == 4
    for method in ("ICPT", "raw photos", "name only"):  # costs of the three, measured on the same episodes
        assert f"\n  {method} " in printed
    picture = Image.open(tmp_path / "demo.png")
    assert picture.width > 4 * 96 and picture.height > 4 * 96  # a row per concept and one of the new photo


def test_demo_names_what_is_missing(tmp_path):
    import pytest

    with pytest.raises(FileNotFoundError, match="world.json is missing"):
        demo.main(["--projector", str(tmp_path / "nope"), "--backbone", str(tmp_path / "nope")])
