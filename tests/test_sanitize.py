"""URLs and quoted text made safe for the HTML and Markdown reports."""

from __future__ import annotations

import pytest

from bench.report.sanitize import markdown_text, safe_url


@pytest.mark.parametrize("url", ["javascript:alert(1)", "JavaScript:alert(1)", " javascript:alert(1)",
                                 "java\tscript:alert(1)", "java\nscript:alert(1)", "\x01javascript:alert(1)",
                                 "javascript&#58;alert(1)", "data:text/html;base64,PHNjcmlwdD4=",
                                 "vbscript:msgbox(1)", "file:///etc/passwd"])
def test_unsafe_urls_become_empty(url):
    assert safe_url(url) == ""


@pytest.mark.parametrize("url", ["https://huggingface.co/mistralai", "http://example.com/a?b=c",
                                 "mailto:someone@example.com", "records/x.json", "page.html#claim", "../up.md"])
def test_safe_urls_are_kept(url):
    assert safe_url(url) == url


def test_markdown_quotes_make_no_link_image_html_or_cell():
    text = markdown_text("fits [a 4090](javascript:alert(1)) ![i](x) <b>bold</b> a|b `code`")
    assert "](javascript:" not in text.replace("\\](javascript:", "")
    assert "<b>" not in text and "\\|" in text and "\\`" in text and "\\[a 4090\\]" in text


def test_markdown_keeps_ordinary_text_as_typed():
    assert markdown_text("Mistral Small 3 (24B) fits 24GB *easily*") == "Mistral Small 3 (24B) fits 24GB *easily*"
