"""Chapters as WebVTT: one cue per chapter, the form a `<track kind="chapters">` reads."""

from __future__ import annotations


def timestamp(seconds: float) -> str:
    millis = round(seconds * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{millis:03d}"


def cue_text(text: str) -> str:
    """One line that cannot end the cue or open a tag: no blank line; & < > escaped (so no "-->")."""
    line = " ".join(text.split()) or "(no caption)"
    return line.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def chapters_vtt(chapters: list[dict]) -> str:
    cues = [f"{c['index'] + 1}\n{timestamp(c['start_s'])} --> {timestamp(c['end_s'])}\n{cue_text(c['text'])}\n"
            for c in chapters]
    return "WEBVTT\n\n" + "\n".join(cues)
