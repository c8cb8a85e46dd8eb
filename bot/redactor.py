"""PII redaction between speech-to-text and the LLM, on Presidio configured fully offline.

The redactor replaces every transcription with a new frame carrying the redacted text (the
STT's frame is dropped, never edited in place, and its raw `result` payload is not copied).
It fails closed: an analyzer error or a redaction slower than the budget replaces the utterance
with a neutral notice instead of letting the raw text through.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from dataclasses import dataclass
from typing import Any

from loguru import logger
from pipecat.frames.frames import Frame, InterimTranscriptionFrame, TranscriptionFrame
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from bot.call import CallInfo
from bot.config import LoadedPipeline
from bot.shared import shared
from bot.stage_options import PresidioOptions

REDACTION_FAILED_NOTICE = "[the caller said something that could not be checked for personal data]"

# One worker thread for every call: spaCy pipelines are not documented as thread-safe, and a
# redaction takes a few milliseconds.
_EXECUTOR = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="redact")


@dataclass(frozen=True)
class PresidioEngines:
    analyzer: Any
    anonymizer: Any
    language: str


def _disable_tldextract_fetch() -> None:
    """Presidio's email recogniser would fetch the public suffix list on first use."""
    import tldextract

    tldextract.tldextract.TLD_EXTRACTOR = tldextract.TLDExtract(suffix_list_urls=())


def load_presidio(spacy_model: str, language: str) -> PresidioEngines:
    """Analyzer + anonymizer with a spaCy model installed as a package (no downloader)."""

    def load() -> PresidioEngines:
        _disable_tldextract_fetch()
        from presidio_analyzer import AnalyzerEngine
        from presidio_analyzer.nlp_engine import NlpEngineProvider
        from presidio_anonymizer import AnonymizerEngine

        provider = NlpEngineProvider(
            nlp_configuration={
                "nlp_engine_name": "spacy",
                "models": [{"lang_code": language, "model_name": spacy_model}],
            }
        )
        analyzer = AnalyzerEngine(
            nlp_engine=provider.create_engine(), supported_languages=[language]
        )
        return PresidioEngines(analyzer=analyzer, anonymizer=AnonymizerEngine(), language=language)

    return shared(("presidio", spacy_model, language), load)


def preload_presidio(options: PresidioOptions) -> None:
    engines = load_presidio(options.spacy_model, options.language)
    supported = set(engines.analyzer.get_supported_entities(options.language))
    unknown = sorted(set(options.entities) - supported)
    if unknown:
        raise ValueError(f"redact.entities: unknown entity types {unknown}")
    # The first analysis initialises spaCy's pipeline: pay for it now, not on a caller's turn.
    PresidioRedactor(engines, options.entities, options.score_threshold).redact("warm up")


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


class PresidioRedactor:
    """Synchronous text redaction with typed tags (`<US_SSN>`)."""

    def __init__(self, engines: PresidioEngines, entities: list[str], score_threshold: float):
        from presidio_anonymizer.entities import OperatorConfig

        self._engines = engines
        self._entities = entities
        self._threshold = score_threshold
        self._operators = {
            entity: OperatorConfig("replace", {"new_value": f"<{entity}>"}) for entity in entities
        }

    def analyze(self, text: str) -> RedactionResult:
        results = self._engines.analyzer.analyze(
            text=text,
            language=self._engines.language,
            entities=self._entities,
            score_threshold=self._threshold,
        )
        results = _without_overlaps(results)
        if not results:
            return RedactionResult(text, [])
        anonymized = self._engines.anonymizer.anonymize(
            text=text, analyzer_results=results, operators=self._operators
        )
        findings = [Finding(r.entity_type, r.start, r.end) for r in results]
        return RedactionResult(anonymized.text, findings)

    def redact(self, text: str) -> str:
        return self.analyze(text).text


def _without_overlaps(results: list[Any]) -> list[Any]:
    """Keep the strongest, then longest, of overlapping findings; return them by position."""
    ranked = sorted(results, key=lambda r: (-r.score, -(r.end - r.start), r.start))
    kept: list[Any] = []
    for result in ranked:
        if all(result.end <= k.start or result.start >= k.end for k in kept):
            kept.append(result)
    return sorted(kept, key=lambda r: r.start)


class RedactionProcessor(FrameProcessor):
    """Replaces each (interim) transcription with a redacted copy; fails closed."""

    def __init__(self, redactor: PresidioRedactor, timeout_secs: float, call_id: str = ""):
        super().__init__(name="PIIRedactor")
        self._redactor = redactor
        self._timeout = timeout_secs
        self._call_id = call_id

    async def _redact(self, text: str) -> str:
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        try:
            redacted = await asyncio.wait_for(
                loop.run_in_executor(_EXECUTOR, self._redactor.redact, text), self._timeout
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
        if direction == FrameDirection.DOWNSTREAM and isinstance(
            frame, (TranscriptionFrame, InterimTranscriptionFrame)
        ):
            redacted = await self._redact(frame.text)
            clean: Frame
            if isinstance(frame, TranscriptionFrame):
                clean = TranscriptionFrame(
                    text=redacted,
                    user_id=frame.user_id,
                    timestamp=frame.timestamp,
                    language=frame.language,
                    finalized=frame.finalized,
                )
            else:
                clean = InterimTranscriptionFrame(
                    text=redacted,
                    user_id=frame.user_id,
                    timestamp=frame.timestamp,
                    language=frame.language,
                )
            await self.push_frame(clean, direction)
            return
        await self.push_frame(frame, direction)


def build_text_redactor(loaded: LoadedPipeline) -> PresidioRedactor:
    """The redactor a pipeline file configures, for use outside a call (`voicebot redact`)."""
    options = loaded.options["redact"]
    assert isinstance(options, PresidioOptions)
    preload_presidio(options)
    engines = load_presidio(options.spacy_model, options.language)
    return PresidioRedactor(engines, options.entities, options.score_threshold)


def make_presidio_redactor(options: PresidioOptions, call: CallInfo) -> RedactionProcessor:
    engines = load_presidio(options.spacy_model, options.language)
    redactor = PresidioRedactor(engines, options.entities, options.score_threshold)
    return RedactionProcessor(redactor, options.timeout_ms / 1000, call_id=call.call_id)
