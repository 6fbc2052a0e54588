"""Corpora: streaming readers and writers, language by script, and the storyworld generator."""

from babelscope.corpus.readers import check_corpus, iter_corpus, read_corpus
from babelscope.corpus.script import lang_share, script_share
from babelscope.corpus.writers import write_corpus

__all__ = ["check_corpus", "iter_corpus", "lang_share", "read_corpus", "script_share", "write_corpus"]
