"""PII redaction between speech-to-text and the LLM, on Presidio configured fully offline.

Each transcript is first put in written form (`bot.pii.normalize`: "one two three" → "123",
"john dot smith at gmail dot com" → "john.smith@gmail.com") with a map back to what the caller
said; our recognisers (`bot.pii.recognizers`, on Presidio's analyzer) run on the written form,
and each finding is mapped back so Presidio's anonymizer replaces the spoken words.
Replacement is a typed tag (`<US_SSN>`) or a per-call placeholder (`[PERSON_1]`, the same one
each time the value is said) whose value stays in the call's vault, never in the LLM's context.

The processor replaces every transcription with a new frame carrying the redacted text (the
STT's frame is dropped, never edited in place, and its raw `result` payload is not copied). A
number the caller spreads over two STT finals is caught by analysing the new final together
with the end of the previous one (a short per-call window). It fails closed: an analyzer error
or a redaction slower than the budget replaces the utterance with a neutral notice.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import re
import time
from dataclasses import dataclass
from typing import Any, Literal

from loguru import logger
from pipecat.frames.frames import Frame, InterimTranscriptionFrame, TranscriptionFrame
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from bot.call import CallInfo
from bot.config import LoadedPipeline
from bot.pii.normalize import normalize
from bot.pii.vault import PiiVault
from bot.shared import shared
from bot.stage_options import PresidioOptions

REDACTION_FAILED_NOTICE = "[the caller said something that could not be checked for personal data]"

# One worker thread for every call: spaCy pipelines are not documented as thread-safe, and a
# redaction takes a few milliseconds.
_EXECUTOR = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="redact")

# What the caller said in the last few finals, kept for the next one (a number read out in
# pauses arrives in pieces, one final each).
_WINDOW_CHARS = 160

Style = Literal["tag", "placeholder"]

# A number the caller is reading out: digits, number words, fillers and the pauses between.
# A finding is widened over any of it that touches the finding, so a number covered only in
# part (a restart, a pause the recogniser did not bridge) is never left half-said.
_NUMBER_TOKEN = (
    r"(?:\d+|zero|oh|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|"
    r"thirteen|fourteen|fifteen|sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|"
    r"fifty|sixty|seventy|eighty|ninety|hundred|thousand|double|triple|um+|uh+|er|hmm)"
)
_NUMBER_AFTER = re.compile(rf"(?:[\s,.;:/-]*{_NUMBER_TOKEN}\b)+", re.IGNORECASE)
_NUMBER_BEFORE = re.compile(rf"(?:\b{_NUMBER_TOKEN}[\s,.;:/-]*)+$", re.IGNORECASE)


def _disable_tldextract_fetch() -> None:
    """Presidio's email recogniser would fetch the public suffix list on first use."""
    import tldextract

    tldextract.tldextract.TLD_EXTRACTOR = tldextract.TLDExtract(suffix_list_urls=())


def load_analyzer(spacy_model: str, language: str, ner: bool = False) -> Any:
    """Presidio's analyzer with our recognisers, loaded once per process (no downloader)."""

    def load() -> Any:
        _disable_tldextract_fetch()
        from bot.pii.recognizers import build_analyzer

        return build_analyzer(spacy_model, language, use_ner=ner)

    return shared(("pii-analyzer", spacy_model, language, ner), load)


def _anonymizer() -> Any:
    from presidio_anonymizer import AnonymizerEngine

    return shared(("pii-anonymizer",), AnonymizerEngine)


def preload_presidio(options: PresidioOptions) -> None:
    analyzer = load_analyzer(options.spacy_model, options.language, options.ner)
    supported = set(analyzer.get_supported_entities(options.language))
    unknown = sorted(set(options.entities) - supported)
    if unknown:
        raise ValueError(f"redact.entities: no recogniser for {unknown}")
    # The first analysis initialises spaCy's pipeline: pay for it now, not on a caller's turn.
    TextRedactor(analyzer, options).analyze("warm up: my name is john and my number is 1")


@dataclass(frozen=True)
class Finding:
    """One piece of personal data: its type and its offsets in the original text."""

    type: str
    start: int
    end: int


@dataclass(frozen=True)
class RedactionResult:
    text: str
    findings: list[Finding]


class TextRedactor:
    """Synchronous redaction of one utterance (thread-confined: run it on one thread)."""

    def __init__(
        self,
        analyzer: Any,
        options: PresidioOptions,
        *,
        vault: PiiVault | None = None,
    ):
        self._analyzer = analyzer
        self._language = options.language
        self._entities = list(options.entities)
        self._threshold = options.score_threshold
        self._style: Style = options.style
        self.vault = vault if vault is not None else PiiVault()
        self._anonymizer = _anonymizer()

    def find(self, text: str, before: str = "") -> list[Finding]:
        """Findings in `text`, in its own offsets. `before` is what the caller said just before
        (the end of the previous final): analysed together, so a number that continues from
        there is recognised; only the parts inside `text` are returned."""
        joined = f"{before} {text}" if before else text
        offset = len(before) + 1 if before else 0
        norm = normalize(joined)
        results = self._analyzer.analyze(
            text=norm.text,
            language=self._language,
            entities=self._entities,
            score_threshold=self._threshold,
        )
        spans: list[Finding] = []
        for result in _without_overlaps(results):
            start, end = norm.to_original(result.start, result.end)
            start, end = max(start - offset, 0), min(end - offset, len(text))
            if end > start:
                spans.append(_widened(text, Finding(result.entity_type, start, end)))
        return _merge(spans)

    def analyze(self, text: str, before: str = "") -> RedactionResult:
        findings = self.find(text, before)
        if not findings:
            return RedactionResult(text, [])
        from presidio_anonymizer.entities import RecognizerResult

        anonymized = self._anonymizer.anonymize(
            text=text,
            analyzer_results=[RecognizerResult(f.type, f.start, f.end, 1.0) for f in findings],
            operators={f.type: self._operator(f.type) for f in findings},
        )
        return RedactionResult(anonymized.text, findings)

    def redact(self, text: str, before: str = "") -> str:
        return self.analyze(text, before).text

    def _operator(self, entity_type: str) -> Any:
        from presidio_anonymizer.entities import OperatorConfig

        if self._style == "placeholder":
            vault = self.vault
            return OperatorConfig(
                "custom", {"lambda": lambda value: vault.placeholder(entity_type, value)}
            )
        return OperatorConfig("replace", {"new_value": f"<{entity_type}>"})


def _without_overlaps(results: list[Any]) -> list[Any]:
    """Keep the strongest, then longest, of overlapping findings; return them by position."""
    ranked = sorted(results, key=lambda r: (-r.score, -(r.end - r.start), r.start))
    kept: list[Any] = []
    for result in ranked:
        if all(result.end <= k.start or result.start >= k.end for k in kept):
            kept.append(result)
    return sorted(kept, key=lambda r: r.start)


_NUMERIC_TYPES = frozenset(
    {
        "US_SSN",
        "CREDIT_CARD",
        "PHONE_NUMBER",
        "US_BANK_NUMBER",
        "ABA_ROUTING_NUMBER",
        "MEDICAL_RECORD_NUMBER",
        "DATE_OF_BIRTH",
    }
)


def _widened(text: str, finding: Finding) -> Finding:
    """A number finding stretched over the rest of the number it touches."""
    if finding.type not in _NUMERIC_TYPES:
        return finding
    start, end = finding.start, finding.end
    after = _NUMBER_AFTER.match(text, end)
    if after:
        end = after.end()
    before = _NUMBER_BEFORE.search(text[:start])
    if before:
        start = before.start()
    return Finding(finding.type, start, end)


def _merge(spans: list[Finding]) -> list[Finding]:
    """Spans mapped back to the spoken text can touch or overlap: join them."""
    merged: list[Finding] = []
    for span in sorted(spans, key=lambda s: s.start):
        if merged and span.start <= merged[-1].end:
            last = merged[-1]
            merged[-1] = Finding(last.type, last.start, max(last.end, span.end))
        else:
            merged.append(span)
    return merged


class RedactionProcessor(FrameProcessor):
    """Replaces each (interim) transcription with a redacted copy; fails closed."""

    def __init__(
        self,
        redactor: TextRedactor,
        timeout_secs: float,
        *,
        window_secs: float = 10.0,
        interim: Literal["redact", "drop"] = "redact",
    ):
        super().__init__(name="PIIRedactor")
        self._redactor = redactor
        self._timeout = timeout_secs
        self._window_secs = window_secs
        self._interim = interim
        self._recent: list[tuple[float, str]] = []  # (when, final text) within the window

    @property
    def vault(self) -> PiiVault:
        return self._redactor.vault

    def redact_text(self, text: str) -> str:
        """Redact a line outside the pipeline (the call summary's transcript); fails closed."""
        try:
            return self._redactor.redact(text)
        except Exception as exc:
            logger.error(f"redaction failed ({type(exc).__name__}): line withheld")
            return REDACTION_FAILED_NOTICE

    def _before(self) -> str:
        now = time.monotonic()
        self._recent = [(at, text) for at, text in self._recent if now - at <= self._window_secs]
        return " ".join(text for _, text in self._recent)[-_WINDOW_CHARS:]

    async def _redact(self, text: str, before: str) -> str:
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        try:
            redacted = await asyncio.wait_for(
                loop.run_in_executor(_EXECUTOR, self._redactor.redact, text, before),
                self._timeout,
            )
        except TimeoutError:
            logger.warning(f"redaction exceeded {self._timeout * 1000:.0f} ms: utterance withheld")
            return REDACTION_FAILED_NOTICE
        except Exception as exc:  # fail closed whatever the analyzer raised
            logger.error(f"redaction failed ({type(exc).__name__}): utterance withheld")
            return REDACTION_FAILED_NOTICE
        elapsed_ms = (time.perf_counter() - started) * 1000
        logger.debug(f"redacted {len(text)} chars in {elapsed_ms:.1f} ms")
        return redacted

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if direction != FrameDirection.DOWNSTREAM or not isinstance(
            frame, (TranscriptionFrame, InterimTranscriptionFrame)
        ):
            await self.push_frame(frame, direction)
            return
        if isinstance(frame, InterimTranscriptionFrame):
            if self._interim == "drop":
                return
            redacted = await self._redact(frame.text, self._before())
            await self.push_frame(
                InterimTranscriptionFrame(
                    text=redacted,
                    user_id=frame.user_id,
                    timestamp=frame.timestamp,
                    language=frame.language,
                ),
                direction,
            )
            return
        redacted = await self._redact(frame.text, self._before())
        self._recent.append((time.monotonic(), frame.text))
        await self.push_frame(
            TranscriptionFrame(
                text=redacted,
                user_id=frame.user_id,
                timestamp=frame.timestamp,
                language=frame.language,
                finalized=frame.finalized,
            ),
            direction,
        )


def build_text_redactor(loaded: LoadedPipeline) -> TextRedactor:
    """The redactor a pipeline file configures, for use outside a call (`voicebot redact`)."""
    options = loaded.options["redact"]
    assert isinstance(options, PresidioOptions)
    preload_presidio(options)
    return TextRedactor(load_analyzer(options.spacy_model, options.language, options.ner), options)


def make_presidio_redactor(options: PresidioOptions, call: CallInfo) -> RedactionProcessor:
    analyzer = load_analyzer(options.spacy_model, options.language, options.ner)
    return RedactionProcessor(
        TextRedactor(analyzer, options),
        options.timeout_ms / 1000,
        window_secs=options.cross_final_window_secs,
        interim=options.interim,
    )
