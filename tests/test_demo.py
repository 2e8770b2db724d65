"""`icpt demo` end to end on a tiny stand-in of the embedded default (untrained, so only the flow is checked)."""

import json
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
                        "--output", str(tmp_path / "demo.png"), "--eval-episodes", "4"])
    assert scores == 0
    printed = capsys.readouterr().out
    assert printed.count("prompt tokens, added in") == 3
    # recognition only: two questions per concept, the one task the default backbone can do
    assert printed.count("\n      -> ") == 6 and "Can you see" in printed and "What colour" not in printed
    assert "Held-out recognition (4 episodes" in printed and "95 % bootstrap interval" in printed
    for method in ("ICPT", "raw photos", "name only"):  # the three measured on the same episodes
        assert f"\n  {method} " in printed
    picture = Image.open(tmp_path / "demo.png")
    assert picture.width > 4 * 96 and picture.height > 3 * 96


def test_demo_names_what_is_missing(tmp_path):
    import pytest

    with pytest.raises(FileNotFoundError, match="world.json is missing"):
        demo.main(["--projector", str(tmp_path / "nope"), "--backbone", str(tmp_path / "nope")])
