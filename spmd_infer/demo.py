"""The built-in demo checkpoint: a tiny random-weight Llama with a real tokenizer, built once and cached on disk."""

from __future__ import annotations

import logging
import os
import pathlib
import shutil
import uuid

logger = logging.getLogger(__name__)

DEMO_VERSION = "v1"
"""Bump whenever the recipe below changes, so stale caches are never reused."""

_MARKER = ".complete"
_BOS, _EOS, _PAD = "<|begin_of_text|>", "<|end_of_text|>", "<|pad|>"

# Plain role-prefixed turns; the BOS comes from the template, so chat prompts must be encoded
# with add_special_tokens=False (as apply_chat_template does) to avoid a second one.
_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}{{ message['role'] }}: {{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)

# Training text for the tokenizer, shipped inline so building needs no download.
_CORPUS = """\
The sun rose slowly over the quiet town, and the first light touched the roofs of the houses.
A small dog ran across the street, chasing a red ball that rolled toward the park.
In the morning, people walked to work, carrying coffee and talking about the weather.
The weather today is mild, with a light breeze from the west and a few clouds in the sky.
Tomorrow it may rain in the afternoon, so it is a good idea to take an umbrella.
Children played in the garden while their parents read books under the old oak tree.
The library opens at nine o'clock and closes at six in the evening, except on Sunday.
She wrote a short letter to her friend, describing the mountains and the cold clear lakes.
He cooked a simple dinner of rice, beans, and fresh vegetables from the market.
Learning a new language takes time, patience, and a lot of practice every single day.
Computers store numbers, letters, and pictures as long sequences of ones and zeros.
A program is a list of instructions that tells the computer what to do, step by step.
When the program runs, the processor reads each instruction and carries it out.
Good software is easy to read, easy to test, and easy to change when the needs change.
The train left the station at noon and arrived in the city three hours later.
Travelers looked out of the windows at the green fields, the rivers, and the distant hills.
Music filled the hall as the orchestra played a gentle song that everyone knew.
The teacher asked the students to explain their answers in their own words.
Questions are the beginning of understanding, and every answer raises new questions.
What is the capital of France? The capital of France is Paris.
How many days are there in a week? There are seven days in a week.
Why is the sky blue? Sunlight is scattered by the air, and blue light is scattered the most.
Please write a short story about a robot who wants to learn how to paint.
Once upon a time, there was a robot who lived in a workshop full of tools and paint.
Every night, the robot looked at the stars and wondered what colors they really were.
Summarize the following paragraph in one sentence, using simple and clear language.
Translate the sentence into English: the cat is sleeping on the warm windowsill.
List three fruits that are red: apples, strawberries, and cherries.
The numbers one, two, three, four, five, six, seven, eight, nine, and ten are easy to count.
In 2024, the team shipped version 1.0 of the tool, and version 2.0 followed a year later.
Water boils at 100 degrees Celsius and freezes at 0 degrees at sea level.
The meeting was moved from Monday to Wednesday because several people were traveling.
Thank you for your help. You are welcome, and please let me know if you need anything else.
The model reads a prompt, predicts the next token, and repeats until it reaches the end.
Large language models are trained on a great deal of text and can answer many questions.
This small model has random weights, so the words it writes will not make any sense at all.
Batch inference runs many prompts at once, which keeps the hardware busy and saves time.
Each request has an id, a prompt, and a few settings such as the maximum number of tokens.
The results are written to a file, one line for each request, in the same order as the input.
If something goes wrong, the error is recorded for that request and the others continue.
"""


def _cache_root(cache_root: str | None) -> pathlib.Path:
    if cache_root is not None:
        return pathlib.Path(cache_root)
    if os.environ.get("SPMD_INFER_CACHE"):
        return pathlib.Path(os.environ["SPMD_INFER_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (pathlib.Path(xdg) if xdg else pathlib.Path.home() / ".cache") / "spmd_infer"


def demo_prompts_path() -> pathlib.Path:
    """Path of the bundled sample prompts (JSONL)."""
    return pathlib.Path(__file__).parent / "assets" / "sample_prompts.jsonl"


def demo_model_dir(cache_root: str | None = None) -> pathlib.Path:
    """Return the folder of the demo checkpoint, creating it on first use."""
    target = _cache_root(cache_root) / f"demo-llama-{DEMO_VERSION}"
    if (target / _MARKER).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Every torchrun rank may get here at once: each builds privately and the first atomic
    # rename wins; the build is deterministic, so the losers' copies are identical and dropped.
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    last_error: OSError | None = None
    try:
        _build(tmp)
        for _ in range(3):
            try:
                os.rename(tmp, target)
                logger.info(
                    "created the demo model (tiny Llama, RANDOM weights: output is gibberish) in %s; "
                    "run a real checkpoint with model.path=/path/to/hf-checkpoint", target)
                return target
            except OSError as e:
                last_error = e
                if (target / _MARKER).is_file():
                    return target  # another process won the race
                # A folder without the marker is debris (e.g. edited by hand): move it aside
                # atomically, so that only one process deletes it, then retry.
                stale = target.parent / f".{target.name}.stale-{os.getpid()}-{uuid.uuid4().hex[:8]}"
                try:
                    os.rename(target, stale)
                    shutil.rmtree(stale, ignore_errors=True)
                except OSError:
                    pass
        raise RuntimeError(f"could not create the demo model in {target}") from last_error
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _build(folder: pathlib.Path) -> None:
    """Write tokenizer, config and weights into `folder`, the completion marker last."""
    # Heavy imports stay here so that importing this module (e.g. for the prompts path) is cheap.
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.utils import logging as hf_logging

    folder.mkdir(parents=True)
    tokenizer = _build_tokenizer()
    tokenizer.save_pretrained(folder)

    # Round the vocabulary up to a multiple of 64, as real checkpoints do for matmul-friendly shapes.
    vocab_size = -(-len(tokenizer) // 64) * 64
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        rms_norm_eps=1e-5,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        dtype="float32",
    )
    # fork_rng: seed for identical weights in every process without disturbing the caller's RNG.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = LlamaForCausalLM(config).to(torch.float32)
    # Every rank may build at once; one progress bar each for a 1-shard save is only noise.
    bars_were_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model.save_pretrained(folder)  # config.json, generation_config.json, model.safetensors
    finally:
        if bars_were_on:
            hf_logging.enable_progress_bar()

    (folder / "README.md").write_text(
        f"# spmd-infer demo model ({DEMO_VERSION})\n\n"
        "A tiny Llama-architecture model with RANDOM weights (torch.manual_seed(0)) and a byte-level BPE\n"
        "tokenizer trained on a few KB of text. It exists to exercise the engine end to end; its output\n"
        "is meaningless. Point spmd-infer at a real checkpoint with `model.path=/path/to/hf-checkpoint`.\n"
    )
    (folder / _MARKER).write_text(DEMO_VERSION + "\n")


def _build_tokenizer():
    """Byte-level BPE (vocab 512) trained on _CORPUS, wrapped as a Hugging Face fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=[_BOS, _EOS, _PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # BPE training breaks count ties by pair order, so the result is the same in every process.
    tok.train_from_iterator(_CORPUS.splitlines(keepends=True), trainer=trainer)
    bos_id = tok.token_to_id(_BOS)
    # Llama-style: a plain encode() starts with BOS.
    tok.post_processor = processors.TemplateProcessing(
        single=f"{_BOS} $A", pair=f"{_BOS} $A {_BOS} $B:1", special_tokens=[(_BOS, bos_id)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=_BOS,
        eos_token=_EOS,
        pad_token=_PAD,
        add_bos_token=True,
        add_eos_token=False,
        chat_template=_CHAT_TEMPLATE,
        model_max_length=2048,
    )
