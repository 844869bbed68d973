"""Grapheme-to-phoneme on CMUdict: the task, the model builder and the ``G2P`` predictor.

    >>> from minis2s.g2p import G2P
    >>> G2P()(["hello"])            # the model shipped inside the package
    [['HH', 'EH', 'L', 'OW']]

Training: ``G2PTask``, the G2P preset of the generic ``Seq2SeqTask`` (minis2s/task.py), with
the architectures of ``ModelConfig`` (minis2s/models/config.py: ``seq2seq``, the LSTM encoder-decoder that
reads the letters reversed, or ``attention``). ``G2P.attention(word)`` returns an attention
model's alignment of letters to phonemes and ``plot_attention`` draws it.
"""
from __future__ import annotations

import os
from dataclasses import asdict

import numpy as np

from minis2s.checkpoint import CheckpointError
from minis2s.data import Vocab, read_pairs
from minis2s.data.cmudict import load_cmudict, load_split, strip_stress, word_pairs
from minis2s.decode import decode_batched
from minis2s.metrics import score
from minis2s.models import AttentionSeq2Seq
from minis2s.models.config import ModelConfig
from minis2s.models.ensemble import Ensemble
from minis2s.nn import no_grad
from minis2s.task import DataConfig, Seq2SeqTask
from minis2s.translator import load_model

_PRETRAINED_ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pretrained")
# The models shipped inside the package, by name: ``G2P("seq2seq")``, ``--model attention``.
PRETRAINED_MODELS = {
    "seq2seq": os.path.join(_PRETRAINED_ROOT, "g2p"),  # the seq2seq architecture (LSTM encoder-decoder)
    "attention": os.path.join(_PRETRAINED_ROOT, "g2p-attention"),
    "stress": os.path.join(_PRETRAINED_ROOT, "g2p-stress"),  # seq2seq, phonemes with stress digits
    "smoothed": os.path.join(_PRETRAINED_ROOT, "g2p-smoothed"),  # seq2seq trained with label smoothing 0.1
    # the best single model: seq2seq with 2 layers of 512, distilled (token level) from the six-model
    # ensemble at temperature 1, on CMUdict and 24,614 agreed transfer words; 4-bit weights (4.3 MB)
    "distilled": os.path.join(_PRETRAINED_ROOT, "g2p-distilled"),
    # seq2seq distilled (token level) from seq2seq + attention at temperature 2, label smoothing 0.1
    "distilled-t2": os.path.join(_PRETRAINED_ROOT, "g2p-distilled-t2"),
    # the first distilled model: from seq2seq + smoothed + attention at temperature 1, seed 1
    "distilled-ls": os.path.join(_PRETRAINED_ROOT, "g2p-distilled-ls"),
    # smoothed's recipe with another seed (2): a member that errs differently
    "smoothed-seed2": os.path.join(_PRETRAINED_ROOT, "g2p-smoothed-seed2"),
}
# Shipped ensembles, by name: their members (shipped models) decode as one.
PRETRAINED_ENSEMBLES = {"ensemble": ("seq2seq", "smoothed", "attention", "smoothed-seed2", "distilled-ls",
                                     "distilled-t2")}
DEFAULT_MODEL = "ensemble"  # the lowest dev WER of the shipped choices, but for leads inside the noise (README)


def resolve_model(path: str | None) -> str:
    """A model folder, or the name of a shipped model -> its folder (ValueError for a name or
    list that names an ensemble; None: the default, ``DEFAULT_MODEL``). An existing folder wins
    over a shipped model's name."""
    folders = model_folders(path)
    if len(folders) > 1:
        name = DEFAULT_MODEL if path is None else path
        raise ValueError(f"model {name!r} is an ensemble of {len(folders)} models, not one model folder")
    return folders[0]


def model_folders(path) -> list[str]:
    """A model folder, a shipped model's or ensemble's name (None: the default), or a list of
    these -> the model folders it names: one for a model, several for an ensemble."""
    if path is None:
        path = DEFAULT_MODEL
    if isinstance(path, (list, tuple)):
        if not path:
            raise ValueError("the list of models is empty")
        return [folder for p in path for folder in model_folders(p)]
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"model must be a folder, a shipped model's name or a list of them, got {type(path).__name__}")
    path = os.fspath(path)
    if os.path.isdir(path):
        return [path]
    if path in PRETRAINED_ENSEMBLES:
        return [PRETRAINED_MODELS[name] for name in PRETRAINED_ENSEMBLES[path]]
    return [PRETRAINED_MODELS.get(path, path)]


LETTERS = list("abcdefghijklmnopqrstuvwxyz")
PHONEMES = ["AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F", "G", "HH",
            "IH", "IY", "JH", "K", "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH", "T", "TH",
            "UH", "UW", "V", "W", "Y", "Z", "ZH"]
VOWELS = ["AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW"]
# A stress model's phonemes: each vowel with CMUdict's stress digit (0 none, 1 primary, 2 secondary).
STRESSED_PHONEMES = sorted([p for p in PHONEMES if p not in VOWELS] + [v + d for v in VOWELS for d in "012"])

# The G2P preset's training defaults where they differ from TrainConfig's (the shipped seq2seq
# model's run); its model defaults are ModelConfig's own (the shipped seq2seq model).
G2P_TRAIN_DEFAULTS = {"epochs": 40, "lr_threshold": 0.01}
# Letters in, space-separated phonemes out, judged by WER (a word with any error, the closest
# of its pronunciations counting) and PER (phoneme edits / reference phonemes).
G2P_DATA = DataConfig(src_tokens="char", trg_tokens="space", lowercase=True, metric="exact")


def encode_words(words, vocab: Vocab, reverse: bool):
    """Words -> lists of letter ids (reversed if asked); bad words raise ValueError/KeyError."""
    out = []
    for w in words:
        if not isinstance(w, str):
            raise TypeError(f"word must be a str, got {type(w).__name__}")
        if not w:
            raise ValueError("word is empty")
        letters = list(w.lower())
        bad = sorted({c for c in letters if c not in vocab.stoi or c in ("<pad>", "<sos>", "<eos>", "<unk>")})
        if bad:
            raise ValueError(f"word {w!r} has characters outside the model's alphabet: {bad}")
        ids = vocab.encode(letters)
        out.append(ids[::-1] if reverse else ids)
    return out


class G2PTask(Seq2SeqTask):
    """The G2P preset of Seq2SeqTask: CMUdict's train split (or ``train_words``), its 26
    letters and 39 phonemes (69 with ``stress``: vowels with their stress digits), judged by
    greedy dev WER (``metric`` "wer") and PER."""

    metric = "wer"
    lower_is_better = True

    def __init__(self, model_cfg: ModelConfig | None = None, *, train_words=None, dev_words=None,
                 train_limit: int | None = None, eval_batch: int = 512, stress: bool = False, transfer=None):
        if not isinstance(stress, bool):
            raise TypeError(f"stress must be True or False, got {stress!r}")
        self.stress = stress
        train = train_words if train_words is not None else load_split("train", stress)
        dev = dev_words if dev_words is not None else load_split("dev", stress)
        data = DataConfig(**{**asdict(G2P_DATA), "train_limit": train_limit})
        phonemes = STRESSED_PHONEMES if stress else PHONEMES
        pairs = word_pairs(train)
        # transfer: extra (word, phonemes) pairs, a teacher's (``transfer_set``), after the references
        self.transfer = None if transfer is None else read_pairs(transfer, name="transfer")
        if self.transfer is not None:
            _check_transfer(self.transfer, set(load_cmudict()) | set(train) | set(dev))
            pairs = pairs + list(self.transfer)
        super().__init__(pairs, word_pairs(dev) or None, model=model_cfg, data=data, name="g2p",
                         tokens={"src": LETTERS, "trg": phonemes}, eval_batch=eval_batch)
        self.src_vocab, self.trg_vocab = self.src.vocab, self.trg.vocab
        if self.transfer is not None and self.train_unknown:
            raise ValueError(f"transfer: {self.train_unknown} symbols are outside the G2P letters and phonemes"
                             f"{' (with stress digits)' if stress else ''}")

    def data_settings(self) -> dict:
        out = super().data_settings()
        if self.transfer is not None:
            out.update(transfer_file=self.transfer.origin, transfer_pairs=len(self.transfer))
        return out

    def describe(self) -> dict:
        return {**super().describe(), "stress": self.stress}

    def evaluate(self, model, pairs=None, **kw) -> dict:
        """G2P's names for the generic metrics: WER = 1 - exact match, PER = token error rate."""
        m = super().evaluate(model, pairs, **kw)
        return {"wer": 1.0 - m["exact"], "per": m["wer"], "words": m["examples"]}


class G2P:
    """A trained G2P model: ``G2P()(words)`` -> phoneme lists. ``G2P(path)`` loads a model folder
    or a shipped model by name (``PRETRAINED_MODELS``: "seq2seq", "attention"); a list of these,
    or a shipped ensemble's name ("ensemble"), decodes with all of them as one (``members``)."""

    def __init__(self, path=None, *, model=None, meta=None):
        self.members: list[G2P] = []
        if model is None:
            folders = model_folders(path)
            if len(folders) > 1:
                self.members = [G2P(folder) for folder in folders]
                model, meta = _ensemble(self.members)
            else:
                model, meta = _load(folders[0])
        self.model = model.eval() if hasattr(model, "eval") else model
        self.meta = meta
        self.cfg = None if self.members else ModelConfig.from_dict(meta["model"])
        # An ensemble is given letters in reading order and reverses them for the members that need it.
        self.reverse_source = False if self.members else self.cfg.reverse_source
        self.src_vocab, self.trg_vocab = Vocab(meta["vocab"]["src"]), Vocab(meta["vocab"]["trg"])

    @property
    def stress(self) -> bool:
        """Whether this model's phonemes carry stress digits (a model trained with --stress)."""
        return any(tok[-1:] in ("0", "1", "2") for tok in self.meta["vocab"]["trg"])

    def predict(self, words, *, beam: int = 1, nbest: int = 1, batch_size: int = 512, max_len: int | None = None,
                alpha: float = 1.0):
        """words -> for each word a list of ``nbest`` (phonemes, score) pairs (score: normalised
        log-probability; 0.0 for greedy). ``alpha``: beam search's length normalisation
        (log-probability / length**alpha). Bad words raise ValueError/TypeError naming them."""
        if isinstance(words, str):
            raise TypeError("words must be a list of str, not one str (wrap it in a list: [word])")
        ids = encode_words(list(words), self.src_vocab, self.reverse_source)
        hyps = decode_batched(self.model, ids, sos_id=Vocab.sos_id, eos_id=Vocab.eos_id, beam=beam, nbest=nbest,
                              alpha=alpha, batch_size=batch_size, max_len=max_len)
        return [[(self.trg_vocab.decode(h), s) for h, s in r] for r in hyps]

    @property
    def has_attention(self) -> bool:
        """Whether ``attention`` can draw this model's alignments (an ensemble: any member's)."""
        return any(isinstance(m.model, AttentionSeq2Seq) for m in (self.members or [self]))

    def check_attention(self):
        """TypeError unless ``has_attention`` (before any work is done for a heatmap)."""
        if not self.has_attention:
            what = "no member of this ensemble has" if self.members else f"this model (arch {self.cfg.arch!r}) has no"
            raise TypeError(f"{what} attention: attention weights need a model trained with --arch attention")

    def attention(self, word: str, phonemes=None, *, beam: int = 1):
        """The attention of an attention model while it pronounces ``word`` (of an ensemble: its
        first member with attention, aligning the ensemble's pronunciation).

        ``phonemes``: the pronunciation to align (default: the model's own, greedy or beam).
        Returns (letters, phonemes + ['<eos>'], weights (len(phonemes) + 1, len(letters))): row i
        is the attention while predicting output i, columns are the letters in reading order.
        The weights come from a teacher-forced forward along ``phonemes``; for the model's own
        output that is exactly the attention of its greedy decoding.
        """
        self.check_attention()
        if phonemes is None:
            phonemes = self.predict([word], beam=beam)[0][0][0]
        if self.members:  # the ensemble's output, aligned by its first member with attention
            return next(m for m in self.members if m.has_attention).attention(word, phonemes)
        src = np.array(encode_words([word], self.src_vocab, self.reverse_source)[0])[:, None]  # (S, 1)
        trg = np.array([Vocab.sos_id, *self.trg_vocab.encode(list(phonemes)), Vocab.eos_id])[:, None]  # (T, 1)
        with no_grad():
            self.model(src, trg, 1.0, generator=np.random.default_rng(0))
        weights = self.model.attention_weights[1:, :, 0]  # (T-1, S): row 0 is never predicted
        if self.reverse_source:
            weights = weights[:, ::-1]  # columns back into reading order
        return list(word.lower()), list(phonemes) + ["<eos>"], np.asarray(weights, dtype=np.float64)

    def __call__(self, words, *, beam: int = 1):
        """words -> the best phoneme list of each."""
        return [r[0][0] for r in self.predict(words, beam=beam)]

    def text(self, text: str, *, lexicon: bool = True, stress: bool | None = None, beam: int = 1):
        """Running text -> a ``Token`` (text, phonemes, source, alternatives) per word, number and
        punctuation mark, in reading order: CMUdict's first pronunciation where it has the word
        (``lexicon=False``: the model alone), numbers read out, unknown words from this model in
        one batch. ``stress``: None as the model, False stripped, True (a stress model only)
        kept. The front end: minis2s/g2p_text.py."""
        from minis2s.g2p_text import pronounce

        return pronounce(self, text, lexicon=lexicon, stress=stress, beam=beam)


def _check_transfer(pairs, known) -> None:
    """A transfer set's words must be new: one of CMUdict's words would put a teacher's guess
    beside a training reference, or teach the student the teacher's answers on dev or test."""
    clash = sorted({w for w in pairs.src if w in known})
    if clash:
        raise ValueError(f"transfer ({pairs.origin}): {len(clash)} words are CMUdict words "
                         f"(e.g. {clash[0]!r}): a transfer set holds words outside CMUdict")


def transfer_set(g2p: G2P, words, *, beam: int = 1, batch_size: int = 512) -> tuple[list[tuple[str, str]], int]:
    """Sequence-level distillation's data: (word, "PH O N") for each of ``words`` as ``g2p``
    (the teacher, typically an ensemble) pronounces it, greedy unless ``beam`` > 1. Returns
    (pairs, how many words were dropped because the teacher gave no phoneme at all)."""
    words = list(words)
    prons = [r[0][0] for r in g2p.predict(words, beam=beam, batch_size=batch_size)]
    pairs = [(w, " ".join(p)) for w, p in zip(words, prons) if p]
    return pairs, len(words) - len(pairs)


def agreed(pairs, models, *, batch_size: int = 512) -> list[tuple[str, str]]:
    """The (word, "PH O N") ``pairs`` that every one of ``models`` (G2P) pronounces the same
    way, greedy: agreement as a confidence filter on a teacher's labels (Sun et al. 2019 keep
    the unlabelled words their teachers agree on). Its labels are the teacher's, so a word the
    filter keeps teaches no member's idiosyncrasy; the words it drops are the doubtful ones."""
    kept = list(pairs)
    for m in models:  # each judge decodes only what the ones before it kept
        if not kept:
            break
        guesses = m.predict([w for w, _ in kept], batch_size=batch_size)
        kept = [(w, p) for (w, p), r in zip(kept, guesses) if " ".join(r[0][0]) == p]
    return kept


def _load(folder):
    """A G2P model folder -> (model, meta), through the one loader of model folders."""
    translator = load_model(folder)
    if translator.meta.get("task") != "g2p":
        raise CheckpointError(f"{folder}: model.json describes task {translator.meta.get('task')!r}, not 'g2p'")
    return translator.model, translator.meta


def _ensemble(members):
    """G2P members -> (Ensemble, meta): one vocabulary, each member's own source order."""
    first = members[0]
    for m in members[1:]:
        if (m.src_vocab, m.trg_vocab) != (first.src_vocab, first.trg_vocab):
            raise ValueError("the models of an ensemble must share their letter and phoneme vocabularies")
    model = Ensemble([m.model for m in members], reverse_source=[m.reverse_source for m in members])
    return model, {"task": "g2p", "ensemble": [m.meta for m in members], "vocab": first.meta["vocab"]}


def evaluate(g2p: G2P, words: dict, *, beam: int = 1, batch_size: int = 512, alpha: float = 1.0) -> dict:
    """WER/PER of ``g2p`` on {word: [pronunciations]}. For a stress model (``g2p.stress``) the
    references must carry stress too, and the result adds ``wer_no_stress``/``per_no_stress``:
    the same predictions scored with every stress digit removed from both sides."""
    names = list(words)
    preds = [r[0][0] for r in g2p.predict(names, beam=beam, batch_size=batch_size, alpha=alpha)]
    refs = [words[w] for w in names]
    out = score(preds, refs)
    if g2p.stress:
        plain = score([strip_stress(p) for p in preds], [[strip_stress(r) for r in rs] for rs in refs])
        out.update(wer_no_stress=plain["wer"], per_no_stress=plain["per"])
    return out


def plot_attention(letters, phonemes, weights, path, title=None) -> None:
    """The heatmap of ``weights`` (len(phonemes), len(letters)): letters across, phonemes down,
    as a PNG written atomically to ``path`` (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from minis2s.atomic import atomic_save_png

    weights = np.asarray(weights)
    if weights.shape != (len(phonemes), len(letters)):
        raise ValueError(f"weights have shape {weights.shape}, expected ({len(phonemes)}, {len(letters)})")
    fig, ax = plt.subplots(figsize=(2.5 + 0.45 * len(letters), 1.2 + 0.35 * len(phonemes)))
    im = ax.imshow(weights, cmap="Greys", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(letters)), letters)
    ax.set_yticks(range(len(phonemes)), phonemes)
    ax.xaxis.tick_top()
    ax.set_xlabel("letters")
    ax.set_ylabel("phonemes (output order)")
    if title:
        ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.05, label="attention weight")
    fig.tight_layout()
    atomic_save_png(fig, path, dpi=100)
