"""A pretraining run: the four stages in one resumable loop with a wall-clock budget, then the measurement and the export.

The loop is written by hand rather than handed to `transformers.Trainer` (docs/architecture.md says why): each stage
has its own parameters, optimizer and cosine schedule, stage 1 is not a language-model loss, a checkpoint holds the
stage and step it stopped in, and each step's batch comes from that step's own random stream, built here or by
forked worker processes.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from transformers import AutoTokenizer, LlavaForConditionalGeneration

from icpt.episodes import TASKS
from icpt.world.tasks import WorldTasks
from icpt.world.world import RenderBank, World

from .arguments import PretrainArguments
from .batches import (
    TextEncoder,
    TrainingBatches,
    _start_worker,
    batch_stream,
    normalize_pixels,
    prerender_bank,
    to_device,
)
from .card import model_card
from .contrastive import ContrastiveHead, pooled_patch_features
from .evaluation import against_source, attribute_probe, comparison_eval_set, embedding_verification, evaluate
from .modeling import build_model, build_processor, build_tokenizer

TOWER_PREFIX = "model.vision_tower."


def start_from_export(model, tokenizer, folder: Path, option: str = "--init-from", language_only: bool = False) -> dict:
    """Loads an exported backbone's weights into ``model`` (built from this run's settings) and returns
    the export's ``training_results.json``. With ``language_only`` the vision tower keeps its weights and only the
    connector and the language model are loaded (``--language-model-from``)."""
    if not (folder / "model.safetensors").is_file():
        raise FileNotFoundError(
            f"{option} {folder}: no model.safetensors there; pass a folder this script exported."
        )
    if not (folder / "training_results.json").is_file():
        raise FileNotFoundError(
            f"{option} {folder}: no training_results.json there; pass a folder this script exported."
        )
    if AutoTokenizer.from_pretrained(folder).get_vocab() != tokenizer.get_vocab():
        raise ValueError(f"{option} {folder}: its tokenizer differs from the one this script builds.")
    weights = LlavaForConditionalGeneration.from_pretrained(folder).state_dict()
    if language_only:
        tower = {name: value for name, value in model.state_dict().items() if name.startswith(TOWER_PREFIX)}
        weights = {**{n: v for n, v in weights.items() if not n.startswith(TOWER_PREFIX)}, **tower}
    try:
        model.load_state_dict(weights)
    except RuntimeError as error:
        raise ValueError(
            f"{option} {folder}: its weights do not fit this run's model settings (--patch-size, "
            f"--vision-hidden, ...; its training_results.json lists the ones it was trained with): {error}"
        ) from None
    return json.loads((folder / "training_results.json").read_text())


def save_checkpoint(path: Path, state: dict) -> None:
    """Write to a temporary file, then rename: an interrupted save never leaves a broken file."""
    temporary = path.with_suffix(".tmp")
    torch.save(state, temporary)
    os.replace(temporary, path)


def cosine_lr(step: int, total: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


def log(work_dir: Path, message: str) -> None:
    line = f"[{time.strftime('%H:%M:%S')}] {message}"
    print(line, flush=True)
    with open(work_dir / "log.txt", "a") as handle:
        handle.write(line + "\n")


def pretrain(args: PretrainArguments) -> dict:
    """One sitting of a run: builds (or resumes) the backbone, trains the stages that remain within `args.max_minutes`,
    and, when the last stage is done (or with `args.export_now`), measures it and exports it with its card to
    `args.output_dir`. Returns `{"finished", "state"}` and, when finished, `"results"`."""
    if args.copy_steps > args.format_steps:
        raise ValueError(
            f"--copy-steps {args.copy_steps} exceeds --format-steps {args.format_steps}: copying is the first part of "
            "stage 4, so --format-steps counts it too."
        )
    if args.renders_per_identity < args.views:
        raise ValueError(f"--renders-per-identity {args.renders_per_identity} is below --views {args.views}: a "
                         "contrastive batch shows each identity in --views different renders, so keep at least as many.")
    unknown = sorted(set(args.format_tasks) - set(TASKS))
    if unknown or not args.format_tasks:
        raise ValueError(f"--format-tasks {' '.join(args.format_tasks)}: {'unknown ' + ', '.join(unknown) if unknown else 'empty'}; "
                         f"name tasks among {', '.join(TASKS)}.")
    if args.language_model_from is not None and (args.init_from is not None or args.comparison_steps == 0):
        raise ValueError("--language-model-from starts stage 2 from an export's language model, so it needs "
                         "--comparison-steps > 0 and no --init-from (which skips stages 1 and 2).")
    torch.set_num_threads(args.threads)
    work_dir = Path(args.work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    checkpoint_path = work_dir / "checkpoint.pt"
    if checkpoint_path.exists() and not args.resume and not args.export_now:
        raise FileExistsError(f"{checkpoint_path} exists: pass --resume to continue it, or choose another --work-dir.")
    if args.resume and not checkpoint_path.exists():
        raise FileNotFoundError(f"No checkpoint to resume at {checkpoint_path}; run once without --resume first.")
    started, started_cpu = time.time(), time.process_time()

    world = World(
        seed=args.seed,
        num_identities=args.num_identities,
        image_size=args.image_size,
        extra_training_identities=args.extra_training_identities,
    )
    tokenizer = build_tokenizer()
    processor = build_processor(tokenizer, args.image_size, args.patch_size)
    model = build_model(tokenizer, args)
    encoder = TextEncoder(tokenizer, model.config.image_seq_length)
    vision_tower = model.model.vision_tower
    head = ContrastiveHead(args.vision_hidden)
    state = {"contrastive_step": 0, "comparison_step": 0, "wall_seconds": 0.0, "cpu_seconds": 0.0, "history": []}
    optimizer_state = None
    if args.resume or (args.export_now and checkpoint_path.exists()):
        checkpoint = torch.load(checkpoint_path, weights_only=False, map_location="cpu")
        model.load_state_dict(checkpoint["model"])
        head.load_state_dict(checkpoint["head"])
        state = checkpoint["state"]
        optimizer_state = checkpoint["optimizer"]
        torch.set_rng_state(checkpoint["torch_rng"])
        log(
            work_dir,
            f"resumed: contrastive step {state['contrastive_step']}, comparison step {state['comparison_step']}",
        )
    else:
        if args.init_from is not None:
            source = start_from_export(model, tokenizer, Path(args.init_from))
            state["contrastive_step"], state["comparison_step"] = args.contrastive_steps, args.comparison_steps
            # the source's training time and history count towards this backbone's
            for key in ("wall_seconds", "cpu_seconds", "devices", "history"):
                state[key] = source["state"][key]
            state["source"] = {
                "path": str(args.init_from),
                "questions_step": source["state"].get("questions_step", 0),
                "look_alike_fraction": source["args"]["look_alike_fraction"],
                "tower_lr": source["args"]["tower_lr"],
            }
            log(work_dir, f"starting from {args.init_from}: stages 1 and 2 count as done")
        (work_dir / "args.json").write_text(json.dumps(asdict(args), indent=2))

    num_parameters = sum(p.numel() for p in model.parameters())
    log(
        work_dir,
        f"model: {num_parameters / 1e6:.2f} M parameters; world: {len(world.split('train'))} training / "
        f"{len(world.split('held_out'))} held-out identities",
    )

    # Pre-rendered training views (training identities, environment set A only), cached on disk.
    bank_path = (
        work_dir
        / f"bank_seed{args.seed}_n{args.num_identities}+{args.extra_training_identities}_r{args.renders_per_identity}"
        f"_s{args.image_size}.npz"
    )
    if bank_path.exists():
        bank = RenderBank.load(str(bank_path))
    else:
        tick = time.time()
        bank = prerender_bank(world, world.split("train"), args.renders_per_identity, args.seed, args.workers)
        bank.save(str(bank_path.with_suffix(".tmp.npz")))
        os.replace(bank_path.with_suffix(".tmp.npz"), bank_path)
        log(
            work_dir,
            f"rendered {bank.images.shape[0] * bank.images.shape[1]} training views in {time.time() - tick:.0f} s",
        )
    tasks = WorldTasks(world, bank=bank, look_alike_fraction=args.look_alike_fraction)
    batches = TrainingBatches(world, bank, tasks, encoder, args)
    # forked before the model moves to an accelerator: workers only build batches on the CPU
    pool = (
        multiprocessing.get_context("fork").Pool(args.workers, initializer=_start_worker, initargs=(batches,))
        if args.workers > 0
        else None
    )
    ahead = 2 * args.workers
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = True  # ignored on a CPU
    # where the training ran, for the card ("NVIDIA H100 80GB HBM3 with 15 batch workers", "CPU, 2 threads")
    if device.type == "cuda":
        where = f"{torch.cuda.get_device_name(device)} with {args.workers} batch workers"
    else:
        where = f"CPU, {args.threads} threads" + (f", {args.workers} batch workers" if args.workers else "")
    model.to(device)
    head.to(device)
    eval_sets = {
        "held_out": comparison_eval_set(world, "held_out", args.eval_references, seed=1, limit=args.eval_limit),
        "train": {
            "overall": comparison_eval_set(world, "train", args.eval_references, seed=2, limit=args.eval_limit or 200)[
                "overall"
            ]
        },
    }

    def elapsed_minutes() -> float:
        return (time.time() - started) / 60

    def checkpoint(optimizer) -> None:
        state["wall_seconds"] += time.time() - checkpoint.last_wall
        devices = state.setdefault("devices", {})
        devices[where] = devices.get(where, 0.0) + time.time() - checkpoint.last_wall
        state["cpu_seconds"] += time.process_time() - checkpoint.last_cpu
        checkpoint.last_wall, checkpoint.last_cpu = time.time(), time.process_time()
        save_checkpoint(
            checkpoint_path,
            {
                "model": model.state_dict(),
                "head": head.state_dict(),
                "optimizer": optimizer.state_dict() if optimizer is not None else None,
                "state": state,
                "torch_rng": torch.get_rng_state(),
            },
        )
        log(work_dir, f"checkpoint saved ({state['wall_seconds'] / 60:.1f} min of training so far)")

    checkpoint.last_wall, checkpoint.last_cpu = started, started_cpu
    last_checkpoint = time.time()
    out_of_time = False

    # -- stage 1: contrastive vision tower ----------------------------------------------------
    if state["contrastive_step"] < args.contrastive_steps and not args.export_now:
        params = list(vision_tower.parameters()) + list(head.parameters())
        optimizer = torch.optim.AdamW(params, lr=args.contrastive_lr, weight_decay=0.05)
        if optimizer_state is not None and state.get("optimizer_stage") == "contrastive":
            optimizer.load_state_dict(optimizer_state)
        state["optimizer_stage"] = "contrastive"
        vision_tower.train()
        running, running_attribute, tick = [], [], time.time()
        jobs = (("contrastive", step, "") for step in range(state["contrastive_step"], args.contrastive_steps))
        for _, (pixels, classes, attribute_labels) in batch_stream(batches, jobs, pool, ahead):
            step = state["contrastive_step"]
            for group in optimizer.param_groups:
                group["lr"] = cosine_lr(step, args.contrastive_steps, args.contrastive_lr, warmup=100)
            features = pooled_patch_features(vision_tower, normalize_pixels(pixels.to(device)))
            loss, attribute_loss = head.loss(
                features, classes.to(device), to_device(attribute_labels, device), args.temperature,
                args.attribute_weight,
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            running.append(loss.item())
            running_attribute.append(attribute_loss.item())
            state["contrastive_step"] += 1
            if state["contrastive_step"] % 50 == 0:
                log(
                    work_dir,
                    f"contrastive step {state['contrastive_step']}/{args.contrastive_steps} "
                    f"loss {np.mean(running):.3f} (attributes {np.mean(running_attribute):.3f}) "
                    f"({(time.time() - tick) / len(running):.2f} s/step)",
                )
                running, running_attribute, tick = [], [], time.time()
            if state["contrastive_step"] % args.eval_every == 0 or state["contrastive_step"] == args.contrastive_steps:
                verification = embedding_verification(vision_tower, eval_sets)
                entry = {"contrastive_step": state["contrastive_step"], "embedding": verification}
                log(work_dir, "embedding verification " + json.dumps(verification))
                if args.attribute_weight > 0:  # which details the features carry so far (held-out)
                    probe = attribute_probe(world, vision_tower, head)
                    entry["attributes"] = {name: value["accuracy"] for name, value in probe.items()}
                    log(work_dir, "attribute probe " + json.dumps(entry["attributes"]))
                state["history"].append(entry)
                tick = time.time()
            if time.time() - last_checkpoint > 60 * args.checkpoint_minutes:
                checkpoint(optimizer)
                last_checkpoint = time.time()
            if elapsed_minutes() > args.max_minutes:
                out_of_time = True
                break
        if not out_of_time:
            state["optimizer_stage"] = None
            optimizer_state = None
        checkpoint(optimizer)
        last_checkpoint = time.time()

    def language_stage(name: str, total_steps: int, kinds, tower_lr: float) -> bool:
        """Trains connector + language model (and the tower when ``tower_lr`` > 0) on the task
        ``kinds(step)`` names at each step. Returns whether the time budget ran out."""
        counter = f"{name}_step"
        tune_tower = tower_lr > 0
        vision_tower.requires_grad_(tune_tower)
        vision_tower.eval()  # no dropout in the tower; eval keeps its features deterministic
        language = [p for n, p in model.named_parameters() if not n.startswith(TOWER_PREFIX)]
        groups = [{"params": language, "peak": args.lr}]
        if tune_tower:
            groups.append({"params": list(vision_tower.parameters()), "peak": tower_lr})
        optimizer = torch.optim.AdamW(groups, lr=args.lr, weight_decay=0.01)
        if optimizer_state is not None and state.get("optimizer_stage") == name:
            optimizer.load_state_dict(optimizer_state)
        state["optimizer_stage"] = name
        params = [p for group in groups for p in group["params"]]
        running, tick, last_saved = {}, time.time(), time.time()
        jobs = ((name, step, kinds(step)) for step in range(state[counter], total_steps))
        for (_, step, kind), batch in batch_stream(batches, jobs, pool, ahead):
            for group in optimizer.param_groups:
                group["lr"] = cosine_lr(step, total_steps, group["peak"], warmup=200)
            loss = model(**to_device(batch, device)).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            running.setdefault(kind, []).append(loss.item())
            state[counter] += 1
            done = state[counter]
            if done % 50 == 0:
                losses = " ".join(f"{k} loss {np.mean(v):.3f}" for k, v in sorted(running.items()))
                log(work_dir, f"{name} step {done}/{total_steps} {losses} ({(time.time() - tick) / 50:.2f} s/step)")
                running, tick = {}, time.time()
            if done % args.eval_every == 0:
                results = evaluate(model, encoder, eval_sets)
                state["history"].append({counter: done, **{k: round(v["weighted"], 4) for k, v in results.items()}})
                log(work_dir, "eval " + json.dumps(state["history"][-1]))
                tick = time.time()
            if time.time() - last_saved > 60 * args.checkpoint_minutes:
                checkpoint(optimizer)
                last_saved = time.time()
            if elapsed_minutes() > args.max_minutes:
                checkpoint(optimizer)
                return True
        state["optimizer_stage"] = None
        checkpoint(optimizer)
        return False

    # -- stage 2: connector + language model on comparison and descriptions, tower frozen -------
    if not out_of_time and state["comparison_step"] < args.comparison_steps and not args.export_now:
        if state["comparison_step"] > 0 and state.get("language_model_from") != args.language_model_from:
            raise ValueError(
                f"--language-model-from {args.language_model_from or '(not given)'}: this run's stage 2 began (step "
                f"{state['comparison_step']}) from {state.get('language_model_from') or 'random weights'}; pass the "
                "same setting to resume it, or start a new --work-dir.")
        if args.language_model_from is not None and state["comparison_step"] == 0:
            # a language model that already reads images and answers the world's questions, on a new tower:
            # stage 2 then adapts it (and the connector) to the new features instead of learning language too
            start_from_export(model, tokenizer, Path(args.language_model_from), "--language-model-from",
                              language_only=True)
            state["language_model_from"] = str(args.language_model_from)
            log(work_dir, f"stage 2 starts its connector and language model from {args.language_model_from}")
        out_of_time = language_stage(
            "comparison",
            args.comparison_steps,
            lambda step: "describe" if (step + 1) % args.describe_every == 0 else "compare",
            tower_lr=0.0,
        )
        optimizer_state = None

    # -- stage 3: named questions (the layout of ICPT episodes), the whole model tuned ----------
    state.setdefault("questions_step", 0)
    if not out_of_time and state["questions_step"] < args.question_steps and not args.export_now:
        out_of_time = language_stage(
            "questions",
            args.question_steps,
            lambda step: "describe"
            if (step + 1) % args.describe_every == 0
            else ("compare", "named_question")[step % 2],
            tower_lr=args.tower_lr,
        )

    # -- stage 4: the evaluation's answer formats, labels bound to photos in context ---------------
    # Half the question steps are labelled questions (every episode task, recognition included: a stage without it
    # taught the model to answer any labelled prompt with an attribute); the rest keep what stages 2-3 taught.
    # The first --copy-steps are text-only label copying: without it the 4-layer model never wrote back a label it
    # read (it guessed the digits), and dense copying is what made the skill appear (docs/default_model.md).
    state.setdefault("formats_step", 0)
    if not out_of_time and state["formats_step"] < args.format_steps and not args.export_now:
        optimizer_state = optimizer_state if state.get("optimizer_stage") == "formats" else None
        out_of_time = language_stage(
            "formats",
            args.format_steps,
            lambda step: "label_copy"
            if step < args.copy_steps
            else "describe"
            if (step + 1) % args.describe_every == 0
            else ("labelled_question", "compare", "labelled_question", "named_question")[step % 4],
            tower_lr=args.format_tower_lr,
        )

    if pool is not None:
        pool.terminate()
    if out_of_time:
        log(work_dir, f"time budget of {args.max_minutes} min spent; continue with --resume")
        return {"finished": False, "state": state}

    # -- final measurement and export ---------------------------------------------------------
    if args.export_now and not checkpoint_path.exists():
        raise FileNotFoundError(f"Nothing to export: no checkpoint at {checkpoint_path}.")
    results = evaluate(model, encoder, eval_sets)
    log(work_dir, "final eval " + json.dumps(results))
    probe = attribute_probe(world, vision_tower, head) if args.attribute_weight > 0 else None
    log(work_dir, "attribute probe " + json.dumps(probe))
    compared = None
    if state.get("source", {}).get("path"):  # a continuation says what it changed on the same examples
        source_model = LlavaForConditionalGeneration.from_pretrained(state["source"]["path"]).to(device).eval()
        compared = against_source(model.eval(), source_model, encoder, eval_sets)
        log(work_dir, "against the source backbone " + json.dumps(compared))
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output_dir)
    processor.save_pretrained(output_dir)
    size_mb = sum(f.stat().st_size for f in output_dir.iterdir() if f.is_file()) / 2**20
    (output_dir / "README.md").write_text(model_card(args, results, state, num_parameters, size_mb, probe, compared))
    # The world it was trained on, so that users (and `icpt demo`) rebuild the same splits: `World(**settings)`
    # (without the extra training identities: they change no split, and only training used them).
    world_settings = {"seed": args.seed, "num_identities": args.num_identities, "image_size": args.image_size}
    (output_dir / "world.json").write_text(json.dumps(world_settings, indent=1))
    (output_dir / "training_results.json").write_text(
        json.dumps({"results": results, "attribute_probe": probe, "against_source": compared, "state": state,
                    "args": asdict(args)}, indent=1)
    )
    log(work_dir, f"saved to {output_dir} ({size_mb:.1f} MB)")
    return {"finished": True, "results": results, "state": state}
