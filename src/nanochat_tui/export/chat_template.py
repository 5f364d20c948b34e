"""A Jinja chat template that renders exactly our chat format (align/chat.py), for
``tokenizer.apply_chat_template`` in transformers.

The template emits the special tokens as text; the tokenizer matches them as special tokens and
encodes the text between them on its own, so the ids equal ``align.chat.render``'s: a leading
system message joins the first user turn after a blank line, assistant content is a string or a
list of ``text``/``python``/``python_output`` parts, a ``tool`` message is the output of the
preceding python call and stays inside that assistant turn, and an assistant message after it
continues the same turn. ``add_generation_prompt`` appends ``<|assistant_start|>``.
"""

from __future__ import annotations

CHAT_TEMPLATE = (
    "{%- set ns = namespace(system='', open=false) -%}"
    "<|bos|>"
    "{%- for m in messages -%}"
    "{%- if m['role'] == 'system' -%}"
    "{%- set ns.system = m['content'] ~ '\\n\\n' -%}"
    "{%- elif m['role'] == 'user' -%}"
    "{%- if ns.open -%}<|assistant_end|>{%- set ns.open = false -%}{%- endif -%}"
    "<|user_start|>{{ ns.system ~ m['content'] }}<|user_end|>"
    "{%- set ns.system = '' -%}"
    "{%- elif m['role'] == 'tool' -%}"
    "<|output_start|>{{ m['content'] }}<|output_end|>"
    "{%- else -%}"
    "{%- if not ns.open -%}<|assistant_start|>{%- set ns.open = true -%}{%- endif -%}"
    "{%- if m['content'] is string -%}{{ m['content'] }}"
    "{%- else -%}{%- for p in m['content'] -%}"
    "{%- if p['type'] == 'python' -%}<|python_start|>{{ p['text'] }}<|python_end|>"
    "{%- elif p['type'] == 'python_output' -%}<|output_start|>{{ p['text'] }}<|output_end|>"
    "{%- else -%}{{ p['text'] }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if ns.open -%}<|assistant_end|>{%- endif -%}"
    "{%- if add_generation_prompt -%}<|assistant_start|>{%- endif -%}"
)
