"""The claims a run checks (ICPT matches raw references, each ablation costs what it should, the swap test, the
reader adapter's cost) and their verdicts, read from `results.json`'s structure."""


from __future__ import annotations

from .scoring import format_difference, format_value

# "Matches raw references": ICPT's weighted recognition at most this much below, with 95 % confidence.
MATCH_MARGIN = 0.05


def claims(results: dict) -> list[dict]:
    """What the numbers say about the method's claims (those whose rows ran): `[{claim, verdict, evidence}]`.

    `verdict` is "supported", "refuted" or "cannot decide", read off paired differences to `icpt` on
    weighted recognition (`MATCH_MARGIN` for "matches raw references"; p < 0.05 for "helps").
    """
    methods = results["methods"]
    ok = {name for name, row in methods.items() if row["status"] == "ok"}
    metric = "recognition_weighted"
    found = []

    def difference(name, split):
        return methods[name]["difference"].get(split, {}).get(metric) if name in ok else None

    # 1. projection matches raw references at a fraction of the tokens
    claim = "ICPT's projection matches raw reference photos in context at a fraction of the tokens"
    diff = difference("raw_references", "all")
    if "icpt" not in ok or not diff or diff["difference"] is None:
        found.append({"claim": claim, "verdict": "cannot decide", "evidence": "icpt or raw_references did not run"})
    else:
        icpt_minus_raw = {"difference": -diff["difference"], "p_value": diff["p_value"],
                          "low": None if diff["high"] is None else -diff["high"],
                          "high": None if diff["low"] is None else -diff["low"]}
        tokens = (methods["icpt"]["prompt_tokens_per_concept"]["mean"], methods["raw_references"]["prompt_tokens_per_concept"]["mean"])
        evidence = (f"icpt − raw_references = {format_difference(icpt_minus_raw)} weighted recognition, with "
                    f"{tokens[0]:.1f} against {tokens[1]:.1f} prompt tokens per concept")
        if icpt_minus_raw["low"] is not None and icpt_minus_raw["low"] >= -MATCH_MARGIN:
            verdict = "supported"
            evidence += f" (at most {MATCH_MARGIN:.2f} below, with 95 % confidence)"
        elif icpt_minus_raw["high"] is not None and icpt_minus_raw["high"] < 0:
            verdict = "refuted"
            evidence += " (ICPT is below the photos in context)"
        else:
            verdict = "cannot decide"
        found.append({"claim": claim, "verdict": verdict, "evidence": evidence})

    # 2. adaptive length
    claim = "Adaptive prompt length (by visual complexity) helps"
    if "icpt" not in ok or not methods["icpt"]["prompt_tokens_per_concept"]["n"]:
        found.append({"claim": claim, "verdict": "cannot decide", "evidence": "icpt did not run"})
    else:
        tokens = methods["icpt"]["prompt_tokens_per_concept"]
        if tokens["min"] == tokens["max"] and "icpt_adaptive_length" in ok:
            # icpt ships with the length fixed: the ablation switches the rule on
            entry = _ablation_claim(claim, methods, ok, "icpt_adaptive_length", "all", metric)
            entry["verdict"] = {"supported": "refuted", "refuted": "supported"}.get(entry["verdict"], entry["verdict"])
            entry["evidence"] += (f" (icpt gives every concept {tokens['min']:.0f} rows; icpt_adaptive_length "
                                  f"{methods['icpt_adaptive_length']['prompt_tokens_per_concept']['mean']:.1f} on average)")
            found.append(entry)
        elif tokens["min"] == tokens["max"]:
            evidence = (f"every concept got {tokens['min']:.0f} rows from the adaptive rule (the projector has "
                        "min_prompt_length = max_prompt_length), so there is no length to adapt")
            if "icpt_fixed_length" in ok and methods["icpt_fixed_length"]["agreement_with_reference"]:
                agreement = methods["icpt_fixed_length"]["agreement_with_reference"]
                evidence += (f"; icpt_fixed_length gave the same answer on {agreement['same']} of {agreement['n']} "
                             "questions")
            found.append({"claim": claim, "verdict": "cannot decide", "evidence": evidence})
        else:
            found.append(_ablation_claim(claim, methods, ok, "icpt_fixed_length", "all", metric))

    # 3. decoupling helps under environment shift; 4. separation helps on look-alikes. icpt trained without the
    # part: its "with" row switches it on, and a better "with" row supports the claim
    for claim, (off, on), split in (
        ("Identity/environment decoupling (L_dec) helps under environment shift",
         ("icpt_no_decoupling", "icpt_with_decoupling"), "environment_shift"),
        ("Concept separation (L_sep) helps on look-alikes", ("icpt_no_separation", "icpt_with_separation"), "look_alike"),
    ):
        if on in ok:
            entry = _ablation_claim(claim, methods, ok, on, split, metric)
            entry["verdict"] = {"supported": "refuted", "refuted": "supported"}.get(entry["verdict"], entry["verdict"])
        else:
            entry = _ablation_claim(claim, methods, ok, off, split, metric)
        ceiling = results.get("split_ceiling", {}).get(split)
        if ceiling and not ceiling["measurable"]:
            entry["evidence"] += (f"; the photos in context themselves score {format_value(ceiling['value'])} on this "
                                  "split, below the bar")
            if entry["verdict"] != "supported":
                entry["verdict"] = "cannot decide"
        found.append(entry)

    # identity targets (the project's addition): do they help overall?
    if "icpt_no_identity_targets" in ok and "icpt" in ok:
        found.append(_ablation_claim("Identity targets (rows fitted per training identity, regressed onto) help",
                                     methods, ok, "icpt_no_identity_targets", "all", metric))

    # 5. with a reader adapter: does the reader's learning help, and 6. what does it cost?
    if "icpt_frozen_reader" in ok and "icpt" in ok and methods["icpt"].get("reader_lora_rank", 0) > 0:
        found.append(_ablation_claim("A reader adapter trained with the projector helps", methods, ok,
                                     "icpt_frozen_reader", "all", metric))
    cost = results.get("adapter_cost", {})
    if "icpt" in ok and methods["icpt"].get("reader_lora_rank", 0) > 0 and "generic_f1" in cost:
        margin = cost["margin"]
        parts = [("generic questions without concepts, icpt − raw_references (word F1)", cost["generic_f1"])]
        if "raw_references_recognition" in cost:
            parts.append(("photos in context, raw_references_adapted − raw_references (weighted recognition)",
                          cost["raw_references_recognition"]))
        lows = [d["low"] for _, d in parts]
        highs = [d["high"] for _, d in parts]
        if all(low is not None and low >= -margin for low in lows):
            verdict = "supported"
        elif any(high is not None and high < -margin for high in highs):
            verdict = "refuted"
        else:
            verdict = "cannot decide"
        found.append({"claim": f"The reader adapter costs the answers it was not trained for at most {margin:.2f}",
                      "verdict": verdict,
                      "evidence": "; ".join(f"{what} = {format_difference(d)}" for what, d in parts)})

    # 7. the rows carry the identity: swapping the photos changes the answer
    swap = results.get("swap_test", {}).get("methods", {}).get("icpt")
    if swap and swap["changed"]["mean"] is not None:
        target = results["swap_test"]["target"]
        changed = swap["changed"]
        verdict = ("supported" if changed["low"] is not None and changed["low"] >= target else
                   "refuted" if changed["high"] is not None and changed["high"] < target else "cannot decide")
        evidence = (f"icpt changed {format_value(changed)} of {changed['n']} positive answers when the concept's photos "
                    f"were another identity's (yes {format_value(swap['yes_before'])} before, "
                    f"{format_value(swap['yes_after'])} after)")
        raw = results["swap_test"]["methods"].get("raw_references")
        if raw and raw["changed"]["mean"] is not None:
            evidence += f"; the photos in context changed {format_value(raw['changed'])}"
        found.append({"claim": f"A concept's rows carry its identity: swapping its photos changes at least "
                               f"{target:.0%} of positive answers", "verdict": verdict, "evidence": evidence})
    return found


def _ablation_claim(claim, methods, ok, name, split, metric) -> dict:
    """A component helps when switching it off is significantly worse than `icpt` (p < 0.05)."""
    diff = methods[name]["difference"].get(split, {}).get(metric) if name in ok and "icpt" in ok else None
    if not diff or diff["difference"] is None:
        return {"claim": claim, "verdict": "cannot decide", "evidence": f"{name} did not run on this split"}
    if (name != "icpt_frozen_reader" and methods[name].get("reader_lora_rank", 0) == 0
            and methods["icpt"].get("reader_lora_rank", 0) > 0):
        return {"claim": claim, "verdict": "cannot decide", "evidence": (
            f"{name} was trained with the frozen reader and icpt with a reader adapter: they differ in two parts "
            f"({name} − icpt on {split.replace('_', ' ')} = {format_difference(diff)})")}
    evidence = f"{name} − icpt on {split.replace('_', ' ')} = {format_difference(diff)} weighted recognition"
    verdict = {"worse": "supported", "better": "refuted"}.get(diff["verdict"], "cannot decide")
    if verdict == "cannot decide":
        evidence += " (no detectable difference)"
    return {"claim": claim, "verdict": verdict, "evidence": evidence}
