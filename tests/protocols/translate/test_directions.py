"""The six translation directions end to end, through ``translator.py``: a client's body of one API
as the body another API's upstream is sent, that upstream's answer (whole and streamed) as the
client's answer. Direction ids read ``client->upstream`` (``responses->chat``: a Responses client
served by a Chat upstream), then the case (each bug class the translation has met is a named case).

Golden expectations are literal. Every client stream is also read back by the client API's real SDK
stream helper over an in-process transport, and its final object checked field by field.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import orjson
import pytest

from spillgate.protocols.apis import Api
from spillgate.protocols.translate.canonical import Uncarriable
from spillgate.protocols.translate.estimate import estimate_input_tokens
from spillgate.protocols.translate.translator import ANY_FIT, Fit, decode_request
from tests.protocols.translate.conversations import (
    CHAT,
    JSON,
    MESSAGES,
    RESPONSES,
    SDK_FINAL,
    SHORT,
    UpPlan,
    UpReasoning,
    UpText,
    UpTool,
    UpUsage,
    Wire,
    chat_chunk,
    client_context,
    final_fields,
    final_text_and_calls,
    history,
    responses_events,
    tool_links,
    tool_map,
    translate_request,
    translate_response,
    translate_stream,
    unpaired,
    upstream_body,
    upstream_sse,
    upstream_stream,
    wire,
)

DIRECTIONS = [
    (RESPONSES, CHAT),
    (RESPONSES, MESSAGES),
    (CHAT, RESPONSES),
    (CHAT, MESSAGES),
    (MESSAGES, CHAT),
    (MESSAGES, RESPONSES),
]
EPHEMERAL = {"type": "ephemeral"}
PNG = "data:image/png;base64,iVBORw0KGgo="
PATCH = "*** Begin Patch\n*** Update File: app.py\n@@\n-x = 1\n+y = 1\n*** End Patch\n"
GRAMMAR = {"type": "grammar", "syntax": "lark", "definition": "start: begin_patch hunk+ end_patch"}
CMD_SCHEMA = {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"]}
TASK_SCHEMA = {"type": "object", "properties": {"task": {"type": "string"}}, "required": ["task"]}
ANSWER_SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "string"}},
    "required": ["answer"],
    "additionalProperties": False,
}

# -- client tools ---------------------------------------------------------------------------------------
R_PATCH: JSON = {"type": "custom", "name": "apply_patch", "description": "Edit files.", "format": GRAMMAR}
R_AGENTS: JSON = {
    "type": "namespace",
    "name": "multi_agent_v1",
    "description": "Sub-agents.",
    "tools": [
        {"type": "function", "name": "spawn_agent", "description": "Start one.", "parameters": TASK_SCHEMA}
    ],
}
R_EXEC: JSON = {"type": "function", "name": "exec_command", "description": "Run.", "parameters": CMD_SCHEMA}
R_WEB: JSON = {"type": "web_search"}
C_EXEC: JSON = {
    "type": "function",
    "function": {"name": "exec_command", "description": "Run.", "parameters": CMD_SCHEMA},
}
C_PATCH: JSON = {
    "type": "custom",
    "custom": {"name": "apply_patch", "description": "Edit files.", "format": GRAMMAR},
}
M_BASH: JSON = {"name": "Bash", "description": "Run.", "input_schema": CMD_SCHEMA}
M_WEB: JSON = {"type": "web_search_20250305", "name": "web_search", "max_uses": 3}

# The carried custom tool, as every other API's upstream sees it.
PATCH_DESCRIPTION = (
    "Edit files.\n\nThis tool takes one string argument, 'input': the tool's whole free-form input as the "
    "text it expects (not JSON). The input follows this lark grammar:\nstart: begin_patch hunk+ end_patch"
)
PATCH_SCHEMA = {
    "type": "object",
    "properties": {"input": {"type": "string"}},
    "required": ["input"],
    "additionalProperties": False,
}
PATCH_ARGS = orjson.dumps({"input": PATCH}).decode()

# The client tools as each upstream API's body writes them.
CHAT_EXEC_DEF = {
    "type": "function",
    "function": {"name": "exec_command", "description": "Run.", "parameters": CMD_SCHEMA},
}
CHAT_PATCH_DEF = {
    "type": "function",
    "function": {"name": "apply_patch", "description": PATCH_DESCRIPTION, "parameters": PATCH_SCHEMA},
}
CHAT_BASH_DEF = {
    "type": "function",
    "function": {"name": "Bash", "description": "Run.", "parameters": CMD_SCHEMA},
}
MESSAGES_EXEC_DEF = {"name": "exec_command", "description": "Run.", "input_schema": CMD_SCHEMA}
MESSAGES_PATCH_DEF = {"name": "apply_patch", "description": PATCH_DESCRIPTION, "input_schema": PATCH_SCHEMA}
RESPONSES_EXEC_DEF = {
    "type": "function",
    "name": "exec_command",
    "description": "Run.",
    "parameters": CMD_SCHEMA,
    "strict": False,
}
RESPONSES_BASH_DEF = {
    "type": "function",
    "name": "Bash",
    "description": "Run.",
    "parameters": CMD_SCHEMA,
    "strict": False,
}


def r_user(text: str) -> JSON:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def r_dev(text: str) -> JSON:
    return {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": text}]}


def r_call(call_id: str, name: str, arguments: str, **extra: Any) -> JSON:
    return {"type": "function_call", "call_id": call_id, "name": name, "arguments": arguments, **extra}


def r_output(call_id: str, output: Any) -> JSON:
    return {"type": "function_call_output", "call_id": call_id, "output": output}


# == client bodies ====================================================================================
# Responses (Codex CLI)
R_CUSTOM: JSON = {
    "model": "gpt-5.1-codex",
    "instructions": "You are Codex.",
    "input": [
        r_user("Rename x."),
        {"type": "custom_tool_call", "call_id": "call_p1", "name": "apply_patch", "input": PATCH},
        {"type": "custom_tool_call_output", "call_id": "call_p1", "output": "Success."},
    ],
    "tools": [R_PATCH],
}
R_NAMESPACE: JSON = {
    "model": "gpt-5.1-codex",
    "input": [
        r_user("Split the work."),
        r_call("call_s1", "spawn_agent", '{"task":"tests"}', namespace="multi_agent_v1"),
        r_output("call_s1", "agent-7 started"),
    ],
    "tools": [R_AGENTS],
    "tool_choice": {"type": "function", "name": "spawn_agent"},
}
R_HOSTED: JSON = {"model": "gpt-5.1-codex", "input": "Search the docs.", "tools": [R_EXEC, R_WEB]}
R_HOSTED_CHOICE: JSON = {**R_HOSTED, "tool_choice": {"type": "web_search"}}
R_PAIRS: JSON = {
    "model": "gpt-5.1-codex",
    "input": [
        r_user("Look around."),
        r_call("call_a", "exec_command", '{"cmd":"ls"}'),
        r_call("call_b", "exec_command", '{"cmd":"pwd"}'),
        r_output("call_a", "a.py"),
        r_output("call_b", "/w"),
        r_call("call_c.1", "exec_command", '{"cmd":"cat a.py"}'),
        r_output("call_c.1", "x = 1"),
    ],
    "tools": [R_EXEC],
}
R_SYSTEM: JSON = {
    "model": "gpt-5.1-codex",
    "instructions": "You are Codex.",
    "input": [
        r_dev("Sandbox: read-only."),
        r_dev("AGENTS.md: be terse."),
        r_user("Hello."),
        r_dev("Approval policy changed."),
        r_user("Go on."),
    ],
}
R_CARRIED: JSON = {
    "model": "gpt-5.1-codex",
    "input": [
        {
            "type": "message",
            "role": "user",
            "content": [
                {"type": "input_text", "text": "What is on screen?"},
                {"type": "input_image", "image_url": "https://example.com/s.png", "detail": "low"},
            ],
        },
        {"type": "reasoning", "id": "rs_9", "summary": [], "encrypted_content": "gAAA-enc"},
        r_call("call_v", "exec_command", '{"cmd":"shot"}'),
        r_output(
            "call_v", [{"type": "input_text", "text": "shot:"}, {"type": "input_image", "image_url": PNG}]
        ),
    ],
    "tools": [R_EXEC],
    "max_output_tokens": 500,
    "temperature": 0.3,
    "text": {"format": {"type": "json_schema", "name": "answer", "schema": ANSWER_SCHEMA, "strict": True}},
    "stream": True,
}
R_CACHE: JSON = {
    "model": "gpt-5.1-codex",
    "instructions": "You are Codex.",
    "input": [r_dev("Sandbox: read-only."), r_user("Hi.")],
    "tools": [R_EXEC, R_PATCH],
    "prompt_cache_key": "thread-9",
}
R_REASONING: JSON = {
    "model": "gpt-5.1-codex",
    "input": "Think first.",
    "reasoning": {"effort": "medium", "summary": "auto"},
    "include": ["reasoning.encrypted_content"],
    "max_output_tokens": 4000,
}

# Chat (openai SDK apps, local-model clients)
C_PAIRS: JSON = {
    "model": "gpt-4.1",
    "messages": [
        {"role": "user", "content": "Look around."},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "exec_command", "arguments": '{"cmd":"ls"}'},
                },
                {"id": "call_b", "type": "function", "function": {"name": "exec_command", "arguments": ""}},
            ],
        },
        {"role": "tool", "tool_call_id": "call_a", "content": "a.py"},
        {"role": "tool", "tool_call_id": "call_b", "content": [{"type": "text", "text": "/w"}]},
        {"role": "user", "content": "Thanks."},
    ],
    "tools": [C_EXEC],
    "tool_choice": "required",
    "parallel_tool_calls": False,
}
C_SYSTEM: JSON = {
    "model": "gpt-4.1",
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": [{"type": "text", "text": "Answer in English."}]},
        {"role": "user", "content": "Hello."},
        {"role": "system", "content": "Late note."},
        {"role": "user", "content": "Go on."},
    ],
}
C_CARRIED: JSON = {
    "model": "gpt-4.1",
    "messages": [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": PNG, "detail": "high"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/s.png"}},
            ],
        }
    ],
    "max_tokens": 300,
    "temperature": 0.2,
    "stop": ["END"],
    "response_format": {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": ANSWER_SCHEMA, "strict": True},
    },
    "prompt_cache_key": "pk-1",
    "user": "u-1",
    "seed": 7,
    "stream": True,
    "stream_options": {"include_usage": True},
}
C_CUSTOM: JSON = {
    "model": "gpt-5",
    "messages": [
        {"role": "user", "content": "Rename x."},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_p1", "type": "custom", "custom": {"name": "apply_patch", "input": PATCH}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_p1", "content": "Success."},
    ],
    "tools": [C_PATCH],
}
C_CACHE: JSON = {
    "model": "gpt-4.1",
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": "Repo: spillgate."},
        {"role": "user", "content": "Hi."},
    ],
    "tools": [C_EXEC],
    "prompt_cache_key": "pk-2",
}
C_STREAM: JSON = {**C_PAIRS, "stream": True, "stream_options": {"include_usage": True}}
C_CUSTOM_STREAM: JSON = {**C_CUSTOM, "stream": True, "stream_options": {"include_usage": True}}
C_MANY: JSON = {"model": "gpt-4.1", "messages": [{"role": "user", "content": "Hi."}], "n": 2}

# Messages (Claude Code, anthropic SDK apps)
M_PAIRS: JSON = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 1024,
    "system": [
        {"type": "text", "text": "You are Claude Code.", "cache_control": EPHEMERAL},
        {"type": "text", "text": "Env: linux."},
    ],
    "messages": [
        {"role": "user", "content": "Look around."},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "Two commands.", "signature": "SIG-1"},
                {"type": "text", "text": "Running both."},
                {"type": "tool_use", "id": "toolu_01A", "name": "Bash", "input": {"cmd": "ls"}},
                {"type": "tool_use", "id": "toolu_01B", "name": "Bash", "input": {"cmd": "pwd"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01A", "content": "a.py"},
                {"type": "tool_result", "tool_use_id": "toolu_01B", "content": "/w", "is_error": True},
                {"type": "text", "text": "Now read it.", "cache_control": EPHEMERAL},
            ],
        },
    ],
    "tools": [{**M_BASH, "cache_control": EPHEMERAL}],
}
M_CARRIED: JSON = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 700,
    "messages": [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Compare these."},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
                },
                {"type": "image", "source": {"type": "url", "url": "https://example.com/s.png"}},
            ],
        },
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_02", "name": "Bash", "input": {"cmd": "shot"}}],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_02",
                    "content": [
                        {"type": "text", "text": "shot:"},
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"},
                        },
                    ],
                }
            ],
        },
    ],
    "tools": [M_BASH],
    "stop_sequences": ["END"],
    "temperature": 0.5,
    "top_k": 5,
    "metadata": {"user_id": "user_1_session_2"},
    "output_config": {"format": {"type": "json_schema", "schema": ANSWER_SCHEMA}},
    "stream": True,
}
M_HOSTED: JSON = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 100,
    "messages": [{"role": "user", "content": "Search the docs."}],
    "tools": [M_BASH, M_WEB],
}
M_HOSTED_CHOICE: JSON = {**M_HOSTED, "tool_choice": {"type": "tool", "name": "web_search"}}


# == requests =========================================================================================
REQUEST_CASES = [
    pytest.param(
        RESPONSES,
        CHAT,
        R_CUSTOM,
        {
            "model": "up-model",
            "messages": [
                {"role": "system", "content": "You are Codex."},
                {"role": "user", "content": "Rename x."},
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [
                        {
                            "id": "call_p1",
                            "type": "function",
                            "function": {"name": "apply_patch", "arguments": PATCH_ARGS},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "call_p1", "content": "Success."},
            ],
            "tools": [CHAT_PATCH_DEF],
        },
        (),
        id="responses->chat:custom_tool_apply_patch",
    ),
    pytest.param(
        RESPONSES,
        MESSAGES,
        R_CUSTOM,
        {
            "model": "up-model",
            "max_tokens": 8192,
            "system": [{"type": "text", "text": "You are Codex."}],
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "Rename x."}]},
                {
                    "role": "assistant",
                    "content": [
                        {
                            "type": "tool_use",
                            "id": "call_p1",
                            "name": "apply_patch",
                            "input": {"input": PATCH},
                        }
                    ],
                },
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": "call_p1", "content": "Success."}],
                },
            ],
            "tools": [MESSAGES_PATCH_DEF],
        },
        (),
        id="responses->messages:custom_tool_apply_patch",
    ),
    pytest.param(
        RESPONSES,
        CHAT,
        R_NAMESPACE,
        {
            "model": "up-model",
            "messages": [
                {"role": "user", "content": "Split the work."},
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [
                        {
                            "id": "call_s1",
                            "type": "function",
                            "function": {
                                "name": "multi_agent_v1__spawn_agent",
                                "arguments": '{"task":"tests"}',
                            },
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "call_s1", "content": "agent-7 started"},
            ],
            "tools": [
                {
                    "type": "function",
                    "function": {
                        "name": "multi_agent_v1__spawn_agent",
                        "description": "Start one.\n\n(Part of multi_agent_v1: Sub-agents.)",
                        "parameters": TASK_SCHEMA,
                    },
                }
            ],
            "tool_choice": {"type": "function", "function": {"name": "multi_agent_v1__spawn_agent"}},
        },
        (),
        id="responses->chat:namespace_tool_flattened",
    ),
    pytest.param(
        RESPONSES,
        MESSAGES,
        R_NAMESPACE,
        {
            "model": "up-model",
            "max_tokens": 8192,
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "Split the work."}]},
                {
                    "role": "assistant",
                    "content": [
                        {
                            "type": "tool_use",
                            "id": "call_s1",
                            "name": "multi_agent_v1__spawn_agent",
                            "input": {"task": "tests"},
                        }
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": "call_s1", "content": "agent-7 started"}
                    ],
                },
            ],
            "tools": [
                {
                    "name": "multi_agent_v1__spawn_agent",
                    "description": "Start one.\n\n(Part of multi_agent_v1: Sub-agents.)",
                    "input_schema": TASK_SCHEMA,
                }
            ],
            "tool_choice": {"type": "tool", "name": "multi_agent_v1__spawn_agent"},
        },
        (),
        id="responses->messages:namespace_tool_flattened",
    ),
    pytest.param(
        RESPONSES,
        CHAT,
        R_HOSTED,
        {
            "model": "up-model",
            "messages": [{"role": "user", "content": "Search the docs."}],
            "tools": [CHAT_EXEC_DEF],
        },
        ("hosted tool web_search",),
        id="responses->chat:hosted_web_search_omitted",
    ),
    pytest.param(
        RESPONSES,
        MESSAGES,
        R_HOSTED,
        {
            "model": "up-model",
            "max_tokens": 8192,
            "messages": [{"role": "user", "content": [{"type": "text", "text": "Search the docs."}]}],
            "tools": [MESSAGES_EXEC_DEF],
        },
        ("hosted tool web_search",),
        id="responses->messages:hosted_web_search_omitted",
    ),
    pytest.param(
        RESPONSES,
        CHAT,
        R_PAIRS,
        {
            "model": "up-model",
            "messages": [
                {"role": "user", "content": "Look around."},
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [
                        {
                            "id": "call_a",
                            "type": "function",
                            "function": {"name": "exec_command", "arguments": '{"cmd":"ls"}'},
                        },
                        {
                            "id": "call_b",
                            "type": "function",
                            "function": {"name": "exec_command", "arguments": '{"cmd":"pwd"}'},
                        },
                    ],
                },
                {"role": "tool", "tool_call_id": "call_a", "content": "a.py"},
                {"role": "tool", "tool_call_id": "call_b", "content": "/w"},
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [
                        {
                            "id": "call_c.1",
                            "type": "function",
                            "function": {"name": "exec_command", "arguments": '{"cmd":"cat a.py"}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "call_c.1", "content": "x = 1"},
            ],
            "tools": [CHAT_EXEC_DEF],
        },
        (),
        id="responses->chat:call_output_pairs",
    ),
    pytest.param(
        RESPONSES,
        MESSAGES,
        R_PAIRS,
        {
            "model": "up-model",
            "max_tokens": 8192,
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "Look around."}]},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "tool_use", "id": "call_a", "name": "exec_command", "input": {"cmd": "ls"}},
                        {"type": "tool_use", "id": "call_b", "name": "exec_command", "input": {"cmd": "pwd"}},
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": "call_a", "content": "a.py"},
                        {"type": "tool_result", "tool_use_id": "call_b", "content": "/w"},
                    ],
                },
                {
                    "role": "assistant",
                    "content": [
                        {
                            "type": "tool_use",
                            "id": "call_c_1",
                            "name": "exec_command",
                            "input": {"cmd": "cat a.py"},
                        }
                    ],
                },
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": "call_c_1", "content": "x = 1"}],
                },
            ],
            "tools": [MESSAGES_EXEC_DEF],
        },
        (),
        id="responses->messages:call_output_pairs_ids_sanitised",
    ),
    pytest.param(
        RESPONSES,
        CHAT,
        R_SYSTEM,
        {
            "model": "up-model",
            "messages": [
                {
                    "role": "system",
                    "content": "You are Codex.\n\nSandbox: read-only.\n\nAGENTS.md: be terse.",
                },
                # The later developer message becomes user text, merged with the user turns
                # around it (templates that need alternating turns refuse two user messages).
                {"role": "user", "content": "Hello.\n\nApproval policy changed.\n\nGo on."},
            ],
        },
        (),
        id="responses->chat:local_template_one_leading_system",
    ),
    pytest.param(
        RESPONSES,
        MESSAGES,
        R_SYSTEM,
        {
            "model": "up-model",
            "max_tokens": 8192,
            "system": [
                {"type": "text", "text": "You are Codex."},
                {"type": "text", "text": "Sandbox: read-only."},
                {"type": "text", "text": "AGENTS.md: be terse."},
            ],
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "Hello."},
                        {"type": "text", "text": "Approval policy changed."},
                        {"type": "text", "text": "Go on."},
                    ],
                }
            ],
        },
        (),
        id="responses->messages:system_blocks_in_order",
    ),
    pytest.param(
        RESPONSES,
        CHAT,
        R_CARRIED,
        {
            "model": "up-model",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is on screen?"},
                        {
                            "type": "image_url",
                            "image_url": {"url": "https://example.com/s.png", "detail": "low"},
                        },
                    ],
                },
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [
                        {
                            "id": "call_v",
                            "type": "function",
                            "function": {"name": "exec_command", "arguments": '{"cmd":"shot"}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "call_v", "content": "shot:"},
            ],
            "tools": [CHAT_EXEC_DEF],
            "max_tokens": 500,
            "temperature": 0.3,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": ANSWER_SCHEMA, "strict": True},
            },
            "stream": True,
            "stream_options": {"include_usage": True},
        },
        ("reasoning", "images in tool results"),
        id="responses->chat:carried_and_omitted",
    ),
    pytest.param(
        RESPONSES,
        MESSAGES,
        R_CARRIED,
        {
            "model": "up-model",
            "max_tokens": 500,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is on screen?"},
                        {"type": "image", "source": {"type": "url", "url": "https://example.com/s.png"}},
                    ],
                },
                {
                    "role": "assistant",
                    "content": [
                        {"type": "tool_use", "id": "call_v", "name": "exec_command", "input": {"cmd": "shot"}}
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": "call_v",
                            "content": [
                                {"type": "text", "text": "shot:"},
                                {
                                    "type": "image",
                                    "source": {
                                        "type": "base64",
                                        "media_type": "image/png",
                                        "data": "iVBORw0KGgo=",
                                    },
                                },
                            ],
                        }
                    ],
                },
            ],
            "tools": [MESSAGES_EXEC_DEF],
            "temperature": 0.3,
            "stream": True,
        },
        ("reasoning from another provider", "response format"),
        id="responses->messages:carried_and_omitted",
    ),
    pytest.param(
        RESPONSES,
        CHAT,
        R_CACHE,
        {
            "model": "up-model",
            "messages": [
                {"role": "system", "content": "You are Codex.\n\nSandbox: read-only."},
                {"role": "user", "content": "Hi."},
            ],
            "tools": [CHAT_EXEC_DEF, CHAT_PATCH_DEF],
            "prompt_cache_key": "thread-9",
        },
        (),
        id="responses->chat:prompt_cache_key_carried",
    ),
    pytest.param(
        RESPONSES,
        MESSAGES,
        R_CACHE,
        {
            "model": "up-model",
            "max_tokens": 8192,
            "system": [
                {"type": "text", "text": "You are Codex."},
                {"type": "text", "text": "Sandbox: read-only.", "cache_control": EPHEMERAL},
            ],
            "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi."}]}],
            "tools": [
                MESSAGES_EXEC_DEF,
                {
                    "name": "apply_patch",
                    "description": PATCH_DESCRIPTION,
                    "input_schema": PATCH_SCHEMA,
                    "cache_control": EPHEMERAL,
                },
            ],
        },
        (),
        id="responses->messages:prompt_cache_key_as_cache_control",
    ),
    pytest.param(
        RESPONSES,
        CHAT,
        R_REASONING,
        {"model": "up-model", "messages": [{"role": "user", "content": "Think first."}], "max_tokens": 4000},
        ("reasoning effort",),
        id="responses->chat:reasoning_effort",
    ),
    pytest.param(
        RESPONSES,
        MESSAGES,
        R_REASONING,
        {
            "model": "up-model",
            "max_tokens": 16384,
            "messages": [{"role": "user", "content": [{"type": "text", "text": "Think first."}]}],
            "thinking": {"type": "enabled", "budget_tokens": 8192},
        },
        (),
        id="responses->messages:reasoning_effort_as_thinking_budget",
    ),
    pytest.param(
        CHAT,
        RESPONSES,
        C_PAIRS,
        {
            "model": "up-model",
            "input": [
                {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": "Look around."}],
                },
                {
                    "type": "function_call",
                    "call_id": "call_a",
                    "name": "exec_command",
                    "arguments": '{"cmd":"ls"}',
                },
                {"type": "function_call", "call_id": "call_b", "name": "exec_command", "arguments": ""},
                {"type": "function_call_output", "call_id": "call_a", "output": "a.py"},
                {"type": "function_call_output", "call_id": "call_b", "output": "/w"},
                {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Thanks."}]},
            ],
            "tools": [RESPONSES_EXEC_DEF],
            "tool_choice": "required",
            "parallel_tool_calls": False,
            "store": False,
            "stream": False,
        },
        (),
        id="chat->responses:call_output_pairs",
    ),
    pytest.param(
        CHAT,
        MESSAGES,
        C_PAIRS,
        {
            "model": "up-model",
            "max_tokens": 8192,
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "Look around."}]},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "tool_use", "id": "call_a", "name": "exec_command", "input": {"cmd": "ls"}},
                        {"type": "tool_use", "id": "call_b", "name": "exec_command", "input": {}},
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": "call_a", "content": "a.py"},
                        {"type": "tool_result", "tool_use_id": "call_b", "content": "/w"},
                        {"type": "text", "text": "Thanks."},
                    ],
                },
            ],
            "tools": [MESSAGES_EXEC_DEF],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        },
        (),
        id="chat->messages:call_output_pairs",
    ),
    pytest.param(
        CHAT,
        RESPONSES,
        C_SYSTEM,
        {
            "model": "up-model",
            "input": [
                {
                    "type": "message",
                    "role": "system",
                    "content": [{"type": "input_text", "text": "Be brief."}],
                },
                {
                    "type": "message",
                    "role": "developer",
                    "content": [{"type": "input_text", "text": "Answer in English."}],
                },
                {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hello."}]},
                {
                    "type": "message",
                    "role": "system",
                    "content": [{"type": "input_text", "text": "Late note."}],
                },
                {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Go on."}]},
            ],
            "store": False,
            "stream": False,
        },
        (),
        id="chat->responses:system_messages_in_place",
    ),
    pytest.param(
        CHAT,
        MESSAGES,
        C_SYSTEM,
        {
            "model": "up-model",
            "max_tokens": 8192,
            "system": [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Answer in English."}],
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "Hello."},
                        {"type": "text", "text": "Late note."},
                        {"type": "text", "text": "Go on."},
                    ],
                }
            ],
        },
        (),
        id="chat->messages:system_blocks_and_late_system_as_user",
    ),
    pytest.param(
        CHAT,
        RESPONSES,
        C_CARRIED,
        {
            "model": "up-model",
            "input": [
                {
                    "type": "message",
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "What is this?"},
                        {
                            "type": "input_image",
                            "image_url": "data:image/png;base64,iVBORw0KGgo=",
                            "detail": "high",
                        },
                        {"type": "input_image", "image_url": "https://example.com/s.png", "detail": "auto"},
                    ],
                }
            ],
            "store": False,
            "max_output_tokens": 300,
            "temperature": 0.2,
            "text": {
                "format": {"type": "json_schema", "name": "answer", "schema": ANSWER_SCHEMA, "strict": True}
            },
            "stream": True,
            "prompt_cache_key": "pk-1",
            "user": "u-1",
        },
        ("seed", "stop sequences"),
        id="chat->responses:carried_and_omitted",
    ),
    pytest.param(
        CHAT,
        MESSAGES,
        C_CARRIED,
        {
            "model": "up-model",
            "max_tokens": 300,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is this?"},
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
                        },
                        {"type": "image", "source": {"type": "url", "url": "https://example.com/s.png"}},
                    ],
                }
            ],
            "temperature": 0.2,
            "stop_sequences": ["END"],
            "metadata": {"user_id": "u-1"},
            "stream": True,
        },
        ("seed", "response format"),
        id="chat->messages:carried_and_omitted",
    ),
    pytest.param(
        CHAT,
        RESPONSES,
        C_CUSTOM,
        {
            "model": "up-model",
            "input": [
                {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Rename x."}]},
                {
                    "type": "function_call",
                    "call_id": "call_p1",
                    "name": "apply_patch",
                    "arguments": PATCH_ARGS,
                },
                {"type": "function_call_output", "call_id": "call_p1", "output": "Success."},
            ],
            "tools": [
                {
                    "type": "function",
                    "name": "apply_patch",
                    "description": PATCH_DESCRIPTION,
                    "parameters": PATCH_SCHEMA,
                    "strict": False,
                }
            ],
            "store": False,
            "stream": False,
        },
        (),
        id="chat->responses:custom_tool_apply_patch",
    ),
    pytest.param(
        CHAT,
        MESSAGES,
        C_CUSTOM,
        {
            "model": "up-model",
            "max_tokens": 8192,
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "Rename x."}]},
                {
                    "role": "assistant",
                    "content": [
                        {
                            "type": "tool_use",
                            "id": "call_p1",
                            "name": "apply_patch",
                            "input": {"input": PATCH},
                        }
                    ],
                },
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": "call_p1", "content": "Success."}],
                },
            ],
            "tools": [MESSAGES_PATCH_DEF],
        },
        (),
        id="chat->messages:custom_tool_apply_patch",
    ),
    pytest.param(
        MESSAGES,
        CHAT,
        M_PAIRS,
        {
            "model": "up-model",
            "messages": [
                {"role": "system", "content": "You are Claude Code.\n\nEnv: linux."},
                {"role": "user", "content": "Look around."},
                {
                    "role": "assistant",
                    "content": "Running both.",
                    "tool_calls": [
                        {
                            "id": "toolu_01A",
                            "type": "function",
                            "function": {"name": "Bash", "arguments": '{"cmd":"ls"}'},
                        },
                        {
                            "id": "toolu_01B",
                            "type": "function",
                            "function": {"name": "Bash", "arguments": '{"cmd":"pwd"}'},
                        },
                    ],
                },
                {"role": "tool", "tool_call_id": "toolu_01A", "content": "a.py"},
                {"role": "tool", "tool_call_id": "toolu_01B", "content": "/w"},
                {"role": "user", "content": "Now read it."},
            ],
            "tools": [CHAT_BASH_DEF],
            "max_tokens": 1024,
        },
        ("reasoning", "tool results' error flag"),
        id="messages->chat:call_output_pairs",
    ),
    pytest.param(
        MESSAGES,
        RESPONSES,
        M_PAIRS,
        {
            "model": "up-model",
            "input": [
                {
                    "type": "message",
                    "role": "system",
                    "content": [
                        {"type": "input_text", "text": "You are Claude Code."},
                        {"type": "input_text", "text": "Env: linux."},
                    ],
                },
                {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": "Look around."}],
                },
                {
                    "type": "message",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": "Running both."}],
                },
                {
                    "type": "function_call",
                    "call_id": "toolu_01A",
                    "name": "Bash",
                    "arguments": '{"cmd":"ls"}',
                },
                {
                    "type": "function_call",
                    "call_id": "toolu_01B",
                    "name": "Bash",
                    "arguments": '{"cmd":"pwd"}',
                },
                {"type": "function_call_output", "call_id": "toolu_01A", "output": "a.py"},
                {"type": "function_call_output", "call_id": "toolu_01B", "output": "/w"},
                {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": "Now read it."}],
                },
            ],
            "tools": [RESPONSES_BASH_DEF],
            "store": False,
            "max_output_tokens": 1024,
            "stream": False,
        },
        ("reasoning from another provider", "the error flag of tool results"),
        id="messages->responses:call_output_pairs",
    ),
    pytest.param(
        MESSAGES,
        CHAT,
        M_CARRIED,
        {
            "model": "up-model",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "Compare these."},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                        {"type": "image_url", "image_url": {"url": "https://example.com/s.png"}},
                    ],
                },
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [
                        {
                            "id": "toolu_02",
                            "type": "function",
                            "function": {"name": "Bash", "arguments": '{"cmd":"shot"}'},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "toolu_02", "content": "shot:"},
            ],
            "tools": [CHAT_BASH_DEF],
            "max_tokens": 700,
            "temperature": 0.5,
            "stop": ["END"],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "response", "schema": ANSWER_SCHEMA},
            },
            "stream": True,
            "stream_options": {"include_usage": True},
            "user": "user_1_session_2",
        },
        ("top_k", "images in tool results"),
        id="messages->chat:carried_and_omitted",
    ),
    pytest.param(
        MESSAGES,
        RESPONSES,
        M_CARRIED,
        {
            "model": "up-model",
            "input": [
                {
                    "type": "message",
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "Compare these."},
                        {
                            "type": "input_image",
                            "image_url": "data:image/png;base64,iVBORw0KGgo=",
                            "detail": "auto",
                        },
                        {"type": "input_image", "image_url": "https://example.com/s.png", "detail": "auto"},
                    ],
                },
                {
                    "type": "function_call",
                    "call_id": "toolu_02",
                    "name": "Bash",
                    "arguments": '{"cmd":"shot"}',
                },
                {
                    "type": "function_call_output",
                    "call_id": "toolu_02",
                    "output": [
                        {"type": "input_text", "text": "shot:"},
                        {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "auto"},
                    ],
                },
            ],
            "tools": [RESPONSES_BASH_DEF],
            "store": False,
            "max_output_tokens": 700,
            "temperature": 0.5,
            "text": {"format": {"type": "json_schema", "name": "output", "schema": ANSWER_SCHEMA}},
            "stream": True,
            "user": "user_1_session_2",
        },
        ("top_k", "stop sequences"),
        id="messages->responses:carried_and_omitted",
    ),
    pytest.param(
        MESSAGES,
        CHAT,
        M_HOSTED,
        {
            "model": "up-model",
            "messages": [{"role": "user", "content": "Search the docs."}],
            "tools": [CHAT_BASH_DEF],
            "max_tokens": 100,
        },
        ("hosted tool web_search",),
        id="messages->chat:hosted_web_search_omitted",
    ),
    pytest.param(
        MESSAGES,
        RESPONSES,
        M_HOSTED,
        {
            "model": "up-model",
            "input": [
                {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": "Search the docs."}],
                }
            ],
            "tools": [RESPONSES_BASH_DEF],
            "store": False,
            "max_output_tokens": 100,
            "stream": False,
        },
        ("hosted tool web_search",),
        id="messages->responses:hosted_web_search_omitted",
    ),
    pytest.param(
        CHAT,
        MESSAGES,
        C_CACHE,
        {
            "model": "up-model",
            "max_tokens": 8192,
            "system": [
                {"type": "text", "text": "Be brief."},
                {"type": "text", "text": "Repo: spillgate.", "cache_control": EPHEMERAL},
            ],
            "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi."}]}],
            "tools": [
                {
                    "name": "exec_command",
                    "description": "Run.",
                    "input_schema": CMD_SCHEMA,
                    "cache_control": EPHEMERAL,
                }
            ],
        },
        (),
        id="chat->messages:prompt_cache_key_as_cache_control",
    ),
    pytest.param(
        CHAT,
        RESPONSES,
        C_CACHE,
        {
            "model": "up-model",
            "input": [
                {
                    "type": "message",
                    "role": "system",
                    "content": [{"type": "input_text", "text": "Be brief."}],
                },
                {
                    "type": "message",
                    "role": "developer",
                    "content": [{"type": "input_text", "text": "Repo: spillgate."}],
                },
                {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi."}]},
            ],
            "tools": [RESPONSES_EXEC_DEF],
            "store": False,
            "stream": False,
            "prompt_cache_key": "pk-2",
        },
        (),
        id="chat->responses:prompt_cache_key_carried",
    ),
]


# == upstream answers ==================================================================================
CHAT_USAGE = {
    "prompt_tokens": 100,
    "completion_tokens": 20,
    "total_tokens": 120,
    "prompt_tokens_details": {"cached_tokens": 80},
    "completion_tokens_details": {"reasoning_tokens": 5},
}
RESPONSES_USAGE = {
    "input_tokens": 100,
    "input_tokens_details": {"cached_tokens": 80},
    "output_tokens": 20,
    "output_tokens_details": {"reasoning_tokens": 5},
    "total_tokens": 120,
}
MESSAGES_USAGE = {
    "input_tokens": 15,
    "cache_read_input_tokens": 80,
    "cache_creation_input_tokens": 5,
    "output_tokens": 20,
}
"""Anthropic's counts for 100 input tokens, 80 of them read from the cache and 5 written to it."""


def chat_answer(message: JSON, finish: str, usage: JSON | None = CHAT_USAGE) -> JSON:
    answer: JSON = {
        "id": "chatcmpl-up",
        "object": "chat.completion",
        "created": 1,
        "model": "up-model",
        "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}],
    }
    if usage is not None:
        answer["usage"] = usage
    return answer


def chat_tool_call(call_id: str, name: str, arguments: str) -> JSON:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def responses_answer(output: list[JSON], status: str = "completed") -> JSON:
    return {
        "id": "resp_up",
        "object": "response",
        "created_at": 1,
        "status": status,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "model": "up-model",
        "output": output,
        "usage": RESPONSES_USAGE,
    }


def messages_answer(content: list[JSON], stop_reason: str) -> JSON:
    return {
        "id": "msg_up",
        "type": "message",
        "role": "assistant",
        "model": "up-model",
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": MESSAGES_USAGE,
    }


UP_CHAT_TURN = chat_answer(
    {
        "reasoning_content": "Plan.",
        "content": "Checking.",
        "tool_calls": [
            chat_tool_call("call_a", "exec_command", '{"cmd":"ls"}'),
            chat_tool_call("call_b", "exec_command", '{"cmd":"pwd"}'),
        ],
    },
    "tool_calls",
)
UP_CHAT_PATCH = chat_answer(
    {"content": None, "tool_calls": [chat_tool_call("call_p", "apply_patch", PATCH_ARGS)]}, "tool_calls"
)
UP_CHAT_SPAWN = chat_answer(
    {
        "content": None,
        "tool_calls": [chat_tool_call("call_s", "multi_agent_v1__spawn_agent", '{"task":"docs"}')],
    },
    "tool_calls",
)
UP_CHAT_LENGTH = chat_answer({"reasoning_content": "Long.", "content": "Cut"}, "length")
UP_CHAT_STOP_AFTER_TOOLS = chat_answer(
    {"content": "", "tool_calls": [chat_tool_call("call_a", "exec_command", '{"cmd":"ls"}')]}, "stop", None
)
UP_RESPONSES_TURN = responses_answer(
    [
        {
            "type": "reasoning",
            "id": "rs_up",
            "summary": [{"type": "summary_text", "text": "Plan."}],
            "encrypted_content": "gAAA-up",
        },
        {
            "type": "message",
            "id": "msg_up",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Checking.", "annotations": []}],
        },
        {
            "type": "function_call",
            "id": "fc_a",
            "call_id": "call_a",
            "name": "exec_command",
            "arguments": '{"cmd":"ls"}',
        },
        {
            "type": "function_call",
            "id": "fc_b",
            "call_id": "",
            "name": "exec_command",
            "arguments": '{"cmd":"pwd"}',
        },
    ]
)
UP_RESPONSES_INCOMPLETE = responses_answer(
    [
        {
            "type": "message",
            "id": "msg_up",
            "status": "incomplete",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Cut", "annotations": []}],
        }
    ],
    "incomplete",
)
UP_MESSAGES_TURN = messages_answer(
    [
        {"type": "thinking", "thinking": "Plan.", "signature": "SIG-up"},
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "toolu_01A", "name": "exec_command", "input": {"cmd": "ls"}},
        {"type": "tool_use", "id": "toolu_01B", "name": "exec_command", "input": {"cmd": "pwd"}},
    ],
    "tool_use",
)
UP_MESSAGES_PATCH = messages_answer(
    [{"type": "tool_use", "id": "toolu_p", "name": "apply_patch", "input": {"input": PATCH}}], "tool_use"
)
UP_MESSAGES_SPAWN = messages_answer(
    [{"type": "tool_use", "id": "toolu_s", "name": "multi_agent_v1__spawn_agent", "input": {"task": "docs"}}],
    "tool_use",
)
UP_MESSAGES_LENGTH = messages_answer([{"type": "text", "text": "Cut"}], "max_tokens")

RESPONSE_CASES = [
    pytest.param(
        RESPONSES,
        CHAT,
        R_PAIRS,
        UP_CHAT_TURN,
        {
            "id": "resp_1",
            "object": "response",
            "created_at": 1,
            "status": "completed",
            "error": None,
            "incomplete_details": None,
            "instructions": None,
            "metadata": {},
            "model": "up-model",
            "output": [
                {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "Plan."}]},
                {
                    "type": "message",
                    "id": "msg_1",
                    "status": "completed",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": "Checking.", "annotations": []}],
                },
                {
                    "type": "function_call",
                    "id": "fc_1",
                    "call_id": "call_a",
                    "name": "exec_command",
                    "arguments": '{"cmd":"ls"}',
                    "status": "completed",
                },
                {
                    "type": "function_call",
                    "id": "fc_2",
                    "call_id": "call_b",
                    "name": "exec_command",
                    "arguments": '{"cmd":"pwd"}',
                    "status": "completed",
                },
            ],
            "parallel_tool_calls": True,
            "temperature": None,
            "text": {"format": {"type": "text"}},
            "tool_choice": "auto",
            "tools": [],
            "top_p": None,
            "usage": {
                "input_tokens": 100,
                "input_tokens_details": {"cached_tokens": 80, "cache_write_tokens": 0},
                "output_tokens": 20,
                "output_tokens_details": {"reasoning_tokens": 5},
                "total_tokens": 120,
            },
        },
        id="responses->chat:reasoning_text_and_parallel_calls",
    ),
    pytest.param(
        RESPONSES,
        CHAT,
        R_CUSTOM,
        UP_CHAT_PATCH,
        {
            "id": "resp_1",
            "object": "response",
            "created_at": 1,
            "status": "completed",
            "error": None,
            "incomplete_details": None,
            "instructions": None,
            "metadata": {},
            "model": "up-model",
            "output": [
                {
                    "type": "custom_tool_call",
                    "id": "ctc_1",
                    "call_id": "call_p",
                    "name": "apply_patch",
                    "input": PATCH,
                }
            ],
            "parallel_tool_calls": True,
            "temperature": None,
            "text": {"format": {"type": "text"}},
            "tool_choice": "auto",
            "tools": [],
            "top_p": None,
            "usage": {
                "input_tokens": 100,
                "input_tokens_details": {"cached_tokens": 80, "cache_write_tokens": 0},
                "output_tokens": 20,
                "output_tokens_details": {"reasoning_tokens": 5},
                "total_tokens": 120,
            },
        },
        id="responses->chat:custom_tool_call_restored",
    ),
    pytest.param(
        RESPONSES,
        CHAT,
        R_NAMESPACE,
        UP_CHAT_SPAWN,
        {
            "id": "resp_1",
            "object": "response",
            "created_at": 1,
            "status": "completed",
            "error": None,
            "incomplete_details": None,
            "instructions": None,
            "metadata": {},
            "model": "up-model",
            "output": [
                {
                    "type": "function_call",
                    "id": "fc_1",
                    "call_id": "call_s",
                    "name": "spawn_agent",
                    "arguments": '{"task":"docs"}',
                    "status": "completed",
                    "namespace": "multi_agent_v1",
                }
            ],
            "parallel_tool_calls": True,
            "temperature": None,
            "text": {"format": {"type": "text"}},
            "tool_choice": "auto",
            "tools": [],
            "top_p": None,
            "usage": {
                "input_tokens": 100,
                "input_tokens_details": {"cached_tokens": 80, "cache_write_tokens": 0},
                "output_tokens": 20,
                "output_tokens_details": {"reasoning_tokens": 5},
                "total_tokens": 120,
            },
        },
        id="responses->chat:namespace_call_restored",
    ),
    pytest.param(
        RESPONSES,
        CHAT,
        R_PAIRS,
        UP_CHAT_LENGTH,
        {
            "id": "resp_1",
            "object": "response",
            "created_at": 1,
            "status": "incomplete",
            "error": None,
            "incomplete_details": {"reason": "max_output_tokens"},
            "instructions": None,
            "metadata": {},
            "model": "up-model",
            "output": [
                {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "Long."}]},
                {
                    "type": "message",
                    "id": "msg_1",
                    "status": "completed",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": "Cut", "annotations": []}],
                },
            ],
            "parallel_tool_calls": True,
            "temperature": None,
            "text": {"format": {"type": "text"}},
            "tool_choice": "auto",
            "tools": [],
            "top_p": None,
            "usage": {
                "input_tokens": 100,
                "input_tokens_details": {"cached_tokens": 80, "cache_write_tokens": 0},
                "output_tokens": 20,
                "output_tokens_details": {"reasoning_tokens": 5},
                "total_tokens": 120,
            },
        },
        id="responses->chat:length_usage_incomplete",
    ),
    pytest.param(
        RESPONSES,
        MESSAGES,
        R_PAIRS,
        UP_MESSAGES_TURN,
        {
            "id": "resp_1",
            "object": "response",
            "created_at": 1700000000,
            "status": "completed",
            "error": None,
            "incomplete_details": None,
            "instructions": None,
            "metadata": {},
            "model": "up-model",
            "output": [
                {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "Plan."}]},
                {
                    "type": "message",
                    "id": "msg_1",
                    "status": "completed",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": "Checking.", "annotations": []}],
                },
                {
                    "type": "function_call",
                    "id": "fc_1",
                    "call_id": "call_01A",
                    "name": "exec_command",
                    "arguments": '{"cmd":"ls"}',
                    "status": "completed",
                },
                {
                    "type": "function_call",
                    "id": "fc_2",
                    "call_id": "call_01B",
                    "name": "exec_command",
                    "arguments": '{"cmd":"pwd"}',
                    "status": "completed",
                },
            ],
            "parallel_tool_calls": True,
            "temperature": None,
            "text": {"format": {"type": "text"}},
            "tool_choice": "auto",
            "tools": [],
            "top_p": None,
            "usage": {
                "input_tokens": 100,
                "input_tokens_details": {"cached_tokens": 80, "cache_write_tokens": 5},
                "output_tokens": 20,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": 120,
            },
        },
        id="responses->messages:thinking_text_and_parallel_calls",
    ),
    pytest.param(
        RESPONSES,
        MESSAGES,
        R_CUSTOM,
        UP_MESSAGES_PATCH,
        {
            "id": "resp_1",
            "object": "response",
            "created_at": 1700000000,
            "status": "completed",
            "error": None,
            "incomplete_details": None,
            "instructions": None,
            "metadata": {},
            "model": "up-model",
            "output": [
                {
                    "type": "custom_tool_call",
                    "id": "ctc_1",
                    "call_id": "call_p",
                    "name": "apply_patch",
                    "input": PATCH,
                }
            ],
            "parallel_tool_calls": True,
            "temperature": None,
            "text": {"format": {"type": "text"}},
            "tool_choice": "auto",
            "tools": [],
            "top_p": None,
            "usage": {
                "input_tokens": 100,
                "input_tokens_details": {"cached_tokens": 80, "cache_write_tokens": 5},
                "output_tokens": 20,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": 120,
            },
        },
        id="responses->messages:custom_tool_call_restored",
    ),
    pytest.param(
        RESPONSES,
        MESSAGES,
        R_NAMESPACE,
        UP_MESSAGES_SPAWN,
        {
            "id": "resp_1",
            "object": "response",
            "created_at": 1700000000,
            "status": "completed",
            "error": None,
            "incomplete_details": None,
            "instructions": None,
            "metadata": {},
            "model": "up-model",
            "output": [
                {
                    "type": "function_call",
                    "id": "fc_1",
                    "call_id": "call_s",
                    "name": "spawn_agent",
                    "arguments": '{"task":"docs"}',
                    "status": "completed",
                    "namespace": "multi_agent_v1",
                }
            ],
            "parallel_tool_calls": True,
            "temperature": None,
            "text": {"format": {"type": "text"}},
            "tool_choice": "auto",
            "tools": [],
            "top_p": None,
            "usage": {
                "input_tokens": 100,
                "input_tokens_details": {"cached_tokens": 80, "cache_write_tokens": 5},
                "output_tokens": 20,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": 120,
            },
        },
        id="responses->messages:namespace_call_restored",
    ),
    pytest.param(
        RESPONSES,
        MESSAGES,
        R_PAIRS,
        UP_MESSAGES_LENGTH,
        {
            "id": "resp_1",
            "object": "response",
            "created_at": 1700000000,
            "status": "incomplete",
            "error": None,
            "incomplete_details": {"reason": "max_output_tokens"},
            "instructions": None,
            "metadata": {},
            "model": "up-model",
            "output": [
                {
                    "type": "message",
                    "id": "msg_1",
                    "status": "completed",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": "Cut", "annotations": []}],
                }
            ],
            "parallel_tool_calls": True,
            "temperature": None,
            "text": {"format": {"type": "text"}},
            "tool_choice": "auto",
            "tools": [],
            "top_p": None,
            "usage": {
                "input_tokens": 100,
                "input_tokens_details": {"cached_tokens": 80, "cache_write_tokens": 5},
                "output_tokens": 20,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": 120,
            },
        },
        id="responses->messages:max_tokens_usage_incomplete",
    ),
    pytest.param(
        CHAT,
        RESPONSES,
        C_PAIRS,
        UP_RESPONSES_TURN,
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1700000000,
            "model": "up-model",
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": "Checking.",
                        "refusal": None,
                        "tool_calls": [
                            {
                                "id": "call_a",
                                "type": "function",
                                "function": {"name": "exec_command", "arguments": '{"cmd":"ls"}'},
                            },
                            {
                                "id": "call_b",
                                "type": "function",
                                "function": {"name": "exec_command", "arguments": '{"cmd":"pwd"}'},
                            },
                        ],
                        "reasoning_content": "Plan.",
                    },
                    "finish_reason": "tool_calls",
                    "logprobs": None,
                }
            ],
            "usage": {
                "prompt_tokens": 100,
                "completion_tokens": 20,
                "total_tokens": 120,
                "prompt_tokens_details": {"cached_tokens": 80},
                "completion_tokens_details": {"reasoning_tokens": 5},
            },
        },
        id="chat->responses:reasoning_text_and_parallel_calls",
    ),
    pytest.param(
        CHAT,
        RESPONSES,
        C_PAIRS,
        UP_RESPONSES_INCOMPLETE,
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1700000000,
            "model": "up-model",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "Cut", "refusal": None},
                    "finish_reason": "length",
                    "logprobs": None,
                }
            ],
            "usage": {
                "prompt_tokens": 100,
                "completion_tokens": 20,
                "total_tokens": 120,
                "prompt_tokens_details": {"cached_tokens": 80},
                "completion_tokens_details": {"reasoning_tokens": 5},
            },
        },
        id="chat->responses:incomplete_usage",
    ),
    pytest.param(
        CHAT,
        MESSAGES,
        C_PAIRS,
        UP_MESSAGES_TURN,
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1700000000,
            "model": "up-model",
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": "Checking.",
                        "refusal": None,
                        "tool_calls": [
                            {
                                "id": "call_01A",
                                "type": "function",
                                "function": {"name": "exec_command", "arguments": '{"cmd":"ls"}'},
                            },
                            {
                                "id": "call_01B",
                                "type": "function",
                                "function": {"name": "exec_command", "arguments": '{"cmd":"pwd"}'},
                            },
                        ],
                        "reasoning_content": "Plan.",
                    },
                    "finish_reason": "tool_calls",
                    "logprobs": None,
                }
            ],
            "usage": {
                "prompt_tokens": 100,
                "completion_tokens": 20,
                "total_tokens": 120,
                "prompt_tokens_details": {"cached_tokens": 80},
                "completion_tokens_details": {"reasoning_tokens": 0},
            },
        },
        id="chat->messages:thinking_text_and_parallel_calls",
    ),
    pytest.param(
        CHAT,
        MESSAGES,
        C_PAIRS,
        UP_MESSAGES_LENGTH,
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1700000000,
            "model": "up-model",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "Cut", "refusal": None},
                    "finish_reason": "length",
                    "logprobs": None,
                }
            ],
            "usage": {
                "prompt_tokens": 100,
                "completion_tokens": 20,
                "total_tokens": 120,
                "prompt_tokens_details": {"cached_tokens": 80},
                "completion_tokens_details": {"reasoning_tokens": 0},
            },
        },
        id="chat->messages:max_tokens_usage",
    ),
    pytest.param(
        CHAT,
        MESSAGES,
        C_CUSTOM,
        UP_MESSAGES_PATCH,
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1700000000,
            "model": "up-model",
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": None,
                        "refusal": None,
                        "tool_calls": [
                            {
                                "id": "call_p",
                                "type": "custom",
                                "custom": {"name": "apply_patch", "input": PATCH},
                            }
                        ],
                    },
                    "finish_reason": "tool_calls",
                    "logprobs": None,
                }
            ],
            "usage": {
                "prompt_tokens": 100,
                "completion_tokens": 20,
                "total_tokens": 120,
                "prompt_tokens_details": {"cached_tokens": 80},
                "completion_tokens_details": {"reasoning_tokens": 0},
            },
        },
        id="chat->messages:custom_tool_call_restored",
    ),
    pytest.param(
        MESSAGES,
        CHAT,
        M_PAIRS,
        UP_CHAT_TURN,
        {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "up-model",
            "content": [
                {"type": "thinking", "thinking": "Plan.", "signature": ""},
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_a", "name": "exec_command", "input": {"cmd": "ls"}},
                {"type": "tool_use", "id": "toolu_b", "name": "exec_command", "input": {"cmd": "pwd"}},
            ],
            "stop_reason": "tool_use",
            "stop_sequence": None,
            "usage": {
                "input_tokens": 20,
                "output_tokens": 20,
                "cache_read_input_tokens": 80,
                "cache_creation_input_tokens": 0,
            },
        },
        id="messages->chat:reasoning_text_and_parallel_calls",
    ),
    pytest.param(
        MESSAGES,
        CHAT,
        M_PAIRS,
        UP_CHAT_LENGTH,
        {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "up-model",
            "content": [
                {"type": "thinking", "thinking": "Long.", "signature": ""},
                {"type": "text", "text": "Cut"},
            ],
            "stop_reason": "max_tokens",
            "stop_sequence": None,
            "usage": {
                "input_tokens": 20,
                "output_tokens": 20,
                "cache_read_input_tokens": 80,
                "cache_creation_input_tokens": 0,
            },
        },
        id="messages->chat:length_usage",
    ),
    pytest.param(
        MESSAGES,
        CHAT,
        M_PAIRS,
        UP_CHAT_STOP_AFTER_TOOLS,
        {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "up-model",
            "content": [
                {"type": "tool_use", "id": "toolu_a", "name": "exec_command", "input": {"cmd": "ls"}}
            ],
            "stop_reason": "tool_use",
            "stop_sequence": None,
            "usage": {
                "input_tokens": 0,
                "output_tokens": 0,
                "cache_read_input_tokens": 0,
                "cache_creation_input_tokens": 0,
            },
        },
        id="messages->chat:stop_after_tool_calls_is_tool_use",
    ),
    pytest.param(
        MESSAGES,
        RESPONSES,
        M_PAIRS,
        UP_RESPONSES_TURN,
        {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "up-model",
            "content": [
                {"type": "thinking", "thinking": "Plan.", "signature": ""},
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_a", "name": "exec_command", "input": {"cmd": "ls"}},
                {"type": "tool_use", "id": "toolu_b", "name": "exec_command", "input": {"cmd": "pwd"}},
            ],
            "stop_reason": "tool_use",
            "stop_sequence": None,
            "usage": {
                "input_tokens": 20,
                "output_tokens": 20,
                "cache_read_input_tokens": 80,
                "cache_creation_input_tokens": 0,
            },
        },
        id="messages->responses:reasoning_text_and_parallel_calls",
    ),
    pytest.param(
        MESSAGES,
        RESPONSES,
        M_PAIRS,
        UP_RESPONSES_INCOMPLETE,
        {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "up-model",
            "content": [{"type": "text", "text": "Cut"}],
            "stop_reason": "max_tokens",
            "stop_sequence": None,
            "usage": {
                "input_tokens": 20,
                "output_tokens": 20,
                "cache_read_input_tokens": 80,
                "cache_creation_input_tokens": 0,
            },
        },
        id="messages->responses:incomplete_usage",
    ),
]


# == upstream streams ==================================================================================
USAGE = UpUsage(input=100, output=20, cached=80, reasoning=5)


def chat_call(index: int, call_id: str | None, name: str | None, arguments: str) -> JSON:
    """A Chat tool-call delta (``call_id`` / ``name`` only on a call's first delta)."""
    delta: JSON = {"index": index}
    function: JSON = {"arguments": arguments}
    if call_id is not None:
        delta.update(id=call_id, type="function")
    if name is not None:
        function = {"name": name, **function}
    return {"tool_calls": [{**delta, "function": function}]}


S_CHAT_ONE_CHUNK = upstream_sse(
    CHAT,
    [
        chat_chunk({"role": "assistant", "content": ""}),
        chat_chunk({"reasoning_content": "Plan.", "content": "Calling."}),
        chat_chunk(chat_call(0, "call_a", "exec_command", '{"cmd"')),
        chat_chunk(chat_call(0, None, None, ':"ls"}')),
        chat_chunk({}, "tool_calls"),
        chat_chunk(usage=CHAT_USAGE),
        "[DONE]",
    ],
)
"""A local server (llama.cpp, vLLM): reasoning and text in one delta."""
S_CHAT_PATCH = upstream_stream(
    CHAT,
    UpPlan(
        (UpTool("call_p", "apply_patch", (PATCH_ARGS[:12], PATCH_ARGS[12:40], PATCH_ARGS[40:])),),
        "tool_calls",
        USAGE,
    ),
)
S_CHAT_SPAWN = upstream_stream(
    CHAT,
    UpPlan((UpTool("call_s", "multi_agent_v1__spawn_agent", ('{"task"', ':"docs"}')),), "tool_calls", USAGE),
)
S_CHAT_PARALLEL = upstream_stream(
    CHAT,
    UpPlan(
        (
            UpReasoning(("Two ", "calls.")),
            UpText(("Running ", "both.")),
            UpTool("call_a", "exec_command", ('{"cmd":', '"ls"}')),
            UpTool("call_b", "exec_command", ('{"cmd":"pwd"}',)),
        ),
        "tool_calls",
        USAGE,
    ),
)
S_CHAT_INDEX_REUSED = upstream_sse(
    CHAT,
    [
        chat_chunk({"role": "assistant"}),
        chat_chunk(chat_call(0, "call_a", "exec_command", '{"cmd":"ls"}')),
        chat_chunk(chat_call(0, "call_b", "exec_command", '{"cmd":"pwd"}')),
        chat_chunk({}, "tool_calls"),
        "[DONE]",
    ],
)
"""A local server that numbers every parallel call 0."""
S_CHAT_LENGTH = upstream_stream(CHAT, UpPlan((UpReasoning(("Long.",)), UpText(("Cu", "t"))), "length", USAGE))
S_CHAT_STOP_NO_DONE = upstream_sse(
    CHAT,
    [
        chat_chunk({"role": "assistant", "content": None}),
        chat_chunk(chat_call(0, "call_a", "exec_command", '{"cmd":"ls"}')),
        chat_chunk({}, "stop"),
        chat_chunk(usage={"prompt_tokens": 30, "completion_tokens": 9}),
    ],
)
"""A local server: ``stop`` after a tool call, no ``[DONE]``."""
S_CHAT_INTERLEAVED = upstream_sse(
    CHAT,
    [
        chat_chunk({"role": "assistant"}),
        chat_chunk(chat_call(0, "call_a", "exec_command", '{"cmd":')),
        chat_chunk(chat_call(1, "call_b", "exec_command", '{"cmd":')),
        chat_chunk(
            {
                "tool_calls": [
                    {"index": 0, "function": {"arguments": '"ls"}'}},
                    {"index": 1, "function": {"arguments": '"pwd"}'}},
                ]
            }
        ),
        chat_chunk({}, "tool_calls"),
        "[DONE]",
    ],
)
"""Parallel calls whose argument pieces arrive interleaved (both indexes in one chunk)."""
S_MESSAGES_TURN = upstream_stream(
    MESSAGES,
    UpPlan(
        (
            UpReasoning(("Two ", "calls."), opaque="SIG-up"),
            UpText(("Running ", "both.")),
            UpTool("toolu_01A", "exec_command", ('{"cmd":', '"ls"}')),
            UpTool("toolu_01B", "exec_command", ('{"cmd":"pwd"}',)),
        ),
        "tool_calls",
        USAGE,
    ),
)
S_MESSAGES_PATCH = upstream_stream(
    MESSAGES,
    UpPlan((UpTool("toolu_p", "apply_patch", (PATCH_ARGS[:30], PATCH_ARGS[30:])),), "tool_calls", USAGE),
)
S_MESSAGES_SPAWN = upstream_stream(
    MESSAGES,
    UpPlan((UpTool("toolu_s", "multi_agent_v1__spawn_agent", ('{"task":"docs"}',)),), "tool_calls", USAGE),
)
S_MESSAGES_LENGTH = upstream_stream(MESSAGES, UpPlan((UpText(("Cu", "t")),), "length", USAGE))
S_MESSAGES_NO_ARGUMENTS = upstream_stream(
    MESSAGES, UpPlan((UpTool("toolu_n", "list_files", ("",)),), "tool_calls", USAGE)
)
"""Claude calling a tool that takes no arguments: ``input: {}`` and one empty ``input_json_delta``."""
S_RESPONSES_TURN = upstream_stream(
    RESPONSES,
    UpPlan(
        (
            UpReasoning(("Two ", "calls."), opaque="gAAA-up"),
            UpText(("Running ", "both.")),
            UpTool("call_a", "exec_command", ('{"cmd":', '"ls"}')),
            UpTool("call_b", "exec_command", ('{"cmd":"pwd"}',)),
        ),
        "tool_calls",
        USAGE,
    ),
)
S_RESPONSES_INCOMPLETE = upstream_stream(RESPONSES, UpPlan((UpText(("Cu", "t")),), "length", USAGE))


def _hostile_responses() -> bytes:
    events: list[Any] = responses_events(UpPlan((UpText(("Hi",)),), "stop", UpUsage(10, 2)))
    late = {"type": "response.output_text.delta", "item_id": "msg_up0", "output_index": 0, "content_index": 0}
    events[-1:-1] = [
        {**late, "delta": " LATE", "sequence_number": 90},  # after the item was done: dropped
        b"event: response.output_text.delta\ndata: {not json\n\n",
        {"type": "response.output_text.delta", "output_index": 4, "delta": 7, "sequence_number": 91},
        {"type": "response.something_new", "sequence_number": 92},
        b": keep-alive\n\n",
    ]
    return upstream_sse(RESPONSES, events)


S_RESPONSES_HOSTILE = _hostile_responses()
"""A delta for an item already done, a body that is not JSON, a delta of the wrong type for an item
never added, an event type from the future and an SSE comment, around one text item."""

S_CHAT_REASONING_ORDER = upstream_stream(
    CHAT,
    UpPlan(
        (UpReasoning(("First.",)), UpText(("Then ",)), UpReasoning(("Second.",)), UpText(("done.",))),
        "stop",
        USAGE,
    ),
)
S_MESSAGES_INTERLEAVED_THINKING = upstream_stream(
    MESSAGES,
    UpPlan(
        (
            UpReasoning(("First.",), opaque="SIG-1"),
            UpText(("Checking.",)),
            UpReasoning(("Second.",), opaque="SIG-2"),
            UpTool("toolu_01A", "exec_command", ('{"cmd":"ls"}',)),
        ),
        "tool_calls",
        USAGE,
    ),
)
"""Claude's interleaved thinking: a thinking block between the text and the tool call."""
S_CHAT_HOSTILE = upstream_sse(
    CHAT,
    [
        chat_chunk({"role": "assistant", "content": ""}),
        chat_chunk({"content": "Hi"}),
        b"data: not json\n\n",
        {"id": "chatcmpl-up", "choices": "x"},
        {"id": "chatcmpl-up", "choices": [{"index": 1, "delta": {"content": "OTHER CHOICE"}}]},
        b": ping\n\n",
        {"id": "chatcmpl-up", "object": "chat.completion.chunk", "choices": []},
        chat_chunk({"content": " there"}),
        chat_chunk({}, "stop"),
        chat_chunk(usage={"prompt_tokens": 10, "completion_tokens": 2}),
        "[DONE]",
        chat_chunk({"content": "AFTER DONE"}),
    ],
)
"""Junk around a text answer: a body that is not JSON, choices that are not a list, another
choice, an SSE comment, an empty chunk, a chunk after ``[DONE]``."""
S_MESSAGES_HOSTILE = upstream_sse(
    MESSAGES,
    [
        {
            "type": "message_start",
            "message": {
                "id": "msg_up",
                "model": "up-model",
                "usage": {"input_tokens": 10, "output_tokens": 1},
            },
        },
        {"type": "ping"},
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {
                "type": "server_tool_use",
                "id": "srvtoolu_1",
                "name": "web_search",
                "input": {},
            },
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "input_json_delta", "partial_json": '{"query":"x"}'},
        },
        {"type": "content_block_stop", "index": 0},
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []},
        },
        {"type": "content_block_stop", "index": 1},
        {"type": "content_block_start", "index": 2, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 2, "delta": {"type": "text_delta", "text": "Found"}},
        {"type": "content_block_delta", "index": 7, "delta": {"type": "text_delta", "text": "GHOST"}},
        b"event: content_block_delta\ndata: {not json\n\n",
        {"type": "content_block_delta", "index": 2, "delta": {"type": "text_delta", "text": 5}},
        {"type": "future_event", "data": {}},
        {"type": "content_block_delta", "index": 2, "delta": {"type": "text_delta", "text": " it."}},
        {"type": "content_block_stop", "index": 2},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 3}},
        {"type": "message_stop"},
    ],
)
"""A hosted tool's blocks (skipped), a delta for a block never started, a body that is not JSON, a
delta of the wrong type, an event type from the future."""


# -- the client's stream, literally -----------------------------------------------------------------
def numbered(events: list[tuple[str, JSON]]) -> Wire:
    """Responses events as the client reads them: named by type, numbered 0, 1, 2…"""
    return [(kind, {"type": kind, "sequence_number": n, **fields}) for n, (kind, fields) in enumerate(events)]


def envelope(status: str, output: list[JSON], usage: JSON | None, incomplete: str | None = None) -> JSON:
    """The Response object a Responses client stream carries (the encoder's literal defaults)."""
    return {
        "id": "resp_1",
        "object": "response",
        "created_at": 1700000000,
        "status": status,
        "error": None,
        "incomplete_details": {"reason": incomplete} if incomplete else None,
        "instructions": None,
        "metadata": {},
        "model": "up-model",
        "output": output,
        "parallel_tool_calls": True,
        "temperature": None,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": None,
        "usage": usage,
    }


def r_usage(inp: int, out: int, cached: int = 0, reasoning: int = 0, written: int = 0) -> JSON:
    return {
        "input_tokens": inp,
        "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": written},
        "output_tokens": out,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": inp + out,
    }


def out_chunk(delta: JSON, finish: str | None = None) -> tuple[None, JSON]:
    """A Chat client chunk (choice 0)."""
    choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
    return (None, {**CHUNK_HEAD, "choices": [choice]})


def out_usage(inp: int, out: int, cached: int = 0, reasoning: int = 0) -> tuple[None, JSON]:
    usage = {
        "prompt_tokens": inp,
        "completion_tokens": out,
        "total_tokens": inp + out,
        "prompt_tokens_details": {"cached_tokens": cached},
        "completion_tokens_details": {"reasoning_tokens": reasoning},
    }
    return (None, {**CHUNK_HEAD, "choices": [], "usage": usage})


CHUNK_HEAD = {
    "id": "chatcmpl-1",
    "object": "chat.completion.chunk",
    "created": 1700000000,
    "model": "up-model",
}
DONE: tuple[None, str] = (None, "[DONE]")


def named(events: list[JSON]) -> Wire:
    """Messages events as the client reads them: each named by its type."""
    return [(event["type"], event) for event in events]


# The Responses grammar Codex and the openai SDK read: one output item per block, each with its
# added / delta / done events.
def ev_start() -> list[tuple[str, JSON]]:
    return [
        ("response.created", {"response": envelope("in_progress", [], None)}),
        ("response.in_progress", {"response": envelope("in_progress", [], None)}),
    ]


def rs_item(item_id: str, text: str) -> JSON:
    summary = [{"type": "summary_text", "text": text}] if text else []
    return {"type": "reasoning", "id": item_id, "summary": summary}


def msg_item(item_id: str, text: str, status: str = "completed") -> JSON:
    content = [{"type": "output_text", "text": text, "annotations": []}] if status == "completed" else []
    return {"type": "message", "id": item_id, "status": status, "role": "assistant", "content": content}


def fc_item(
    item_id: str,
    call_id: str,
    name: str,
    arguments: str,
    namespace: str | None = None,
    status: str = "completed",
) -> JSON:
    item = {"type": "function_call", "id": item_id, "call_id": call_id, "name": name, "arguments": arguments}
    item["status"] = status
    if namespace is not None:
        item["namespace"] = namespace
    return item


def ctc_item(item_id: str, call_id: str, name: str, raw: str) -> JSON:
    return {"type": "custom_tool_call", "id": item_id, "call_id": call_id, "name": name, "input": raw}


def ev_reasoning(k: int, item_id: str, pieces: list[str]) -> list[tuple[str, JSON]]:
    at = {"item_id": item_id, "output_index": k, "summary_index": 0}
    text = "".join(pieces)
    return [
        ("response.output_item.added", {"output_index": k, "item": rs_item(item_id, "")}),
        ("response.reasoning_summary_part.added", {**at, "part": {"type": "summary_text", "text": ""}}),
        *[("response.reasoning_summary_text.delta", {**at, "delta": p}) for p in pieces],
        ("response.reasoning_summary_text.done", {**at, "text": text}),
        ("response.reasoning_summary_part.done", {**at, "part": {"type": "summary_text", "text": text}}),
        ("response.output_item.done", {"output_index": k, "item": rs_item(item_id, text)}),
    ]


def ev_message(k: int, item_id: str, pieces: list[str]) -> list[tuple[str, JSON]]:
    at = {"item_id": item_id, "output_index": k, "content_index": 0}
    text = "".join(pieces)
    return [
        ("response.output_item.added", {"output_index": k, "item": msg_item(item_id, "", "in_progress")}),
        (
            "response.content_part.added",
            {**at, "part": {"type": "output_text", "text": "", "annotations": []}},
        ),
        *[("response.output_text.delta", {**at, "delta": p, "logprobs": []}) for p in pieces],
        ("response.output_text.done", {**at, "text": text, "logprobs": []}),
        (
            "response.content_part.done",
            {**at, "part": {"type": "output_text", "text": text, "annotations": []}},
        ),
        ("response.output_item.done", {"output_index": k, "item": msg_item(item_id, text)}),
    ]


def ev_call(
    k: int, item_id: str, call_id: str, name: str, pieces: list[str], namespace: str | None = None
) -> list[tuple[str, JSON]]:
    at = {"item_id": item_id, "output_index": k}
    arguments = "".join(pieces)
    added = fc_item(item_id, call_id, name, "", namespace, "in_progress")
    return [
        ("response.output_item.added", {"output_index": k, "item": added}),
        *[("response.function_call_arguments.delta", {**at, "delta": p}) for p in pieces],
        ("response.function_call_arguments.done", {**at, "arguments": arguments}),
        (
            "response.output_item.done",
            {"output_index": k, "item": fc_item(item_id, call_id, name, arguments, namespace)},
        ),
    ]


def ev_custom(k: int, item_id: str, call_id: str, name: str, raw: str) -> list[tuple[str, JSON]]:
    """A custom tool's call: its raw input in one delta (held until the upstream's call ended)."""
    at = {"item_id": item_id, "output_index": k}
    return [
        ("response.output_item.added", {"output_index": k, "item": ctc_item(item_id, call_id, name, "")}),
        ("response.custom_tool_call_input.delta", {**at, "delta": raw}),
        ("response.custom_tool_call_input.done", {**at, "input": raw}),
        ("response.output_item.done", {"output_index": k, "item": ctc_item(item_id, call_id, name, raw)}),
    ]


def ev_end(output: list[JSON], usage: JSON, incomplete: bool = False) -> list[tuple[str, JSON]]:
    if incomplete:
        return [
            ("response.incomplete", {"response": envelope("incomplete", output, usage, "max_output_tokens")})
        ]
    return [("response.completed", {"response": envelope("completed", output, usage)})]


# The Messages grammar Claude Code and the anthropic SDK read.
def m_start(input_tokens: int) -> JSON:
    usage = {
        "input_tokens": input_tokens,
        "output_tokens": 0,
        "cache_read_input_tokens": 0,
        "cache_creation_input_tokens": 0,
    }
    message: JSON = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "up-model",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": usage,
    }
    return {"type": "message_start", "message": message}


def m_block(index: int, block: JSON, deltas: list[JSON]) -> list[JSON]:
    return [
        {"type": "content_block_start", "index": index, "content_block": block},
        *[{"type": "content_block_delta", "index": index, "delta": d} for d in deltas],
        {"type": "content_block_stop", "index": index},
    ]


def m_thinking(index: int, pieces: list[str]) -> list[JSON]:
    block = {"type": "thinking", "thinking": "", "signature": ""}
    return m_block(index, block, [{"type": "thinking_delta", "thinking": p} for p in pieces])


def m_text(index: int, pieces: list[str]) -> list[JSON]:
    return m_block(index, {"type": "text", "text": ""}, [{"type": "text_delta", "text": p} for p in pieces])


def m_tool(index: int, tool_id: str, name: str, pieces: list[str]) -> list[JSON]:
    block = {"type": "tool_use", "id": tool_id, "name": name, "input": {}}
    return m_block(index, block, [{"type": "input_json_delta", "partial_json": p} for p in pieces])


def m_end(stop_reason: str, output: int, fresh: int, read: int = 0, written: int = 0) -> list[JSON]:
    usage = {
        "output_tokens": output,
        "input_tokens": fresh,
        "cache_read_input_tokens": read,
        "cache_creation_input_tokens": written,
    }
    delta = {
        "type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": None},
        "usage": usage,
    }
    return [delta, {"type": "message_stop"}]


# The Chat chunks the openai SDK's stream helper accumulates.
def out_call(k: int, call_id: str, name: str) -> tuple[None, JSON]:
    return out_chunk(
        {
            "tool_calls": [
                {"index": k, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}
            ]
        }
    )


def out_args(k: int, arguments: str) -> tuple[None, JSON]:
    return out_chunk({"tool_calls": [{"index": k, "function": {"arguments": arguments}}]})


ROLE = out_chunk({"role": "assistant", "content": ""})
FULL_USAGE = {"input": 100, "cached": 80, "output": 20, "reasoning": 5, "total": 120}
NO_REASONING_USAGE = {"input": 100, "cached": 80, "output": 20, "reasoning": 0, "total": 120}
ANTHROPIC_USAGE = {"input": 20, "cache_read": 80, "cache_write": 0, "output": 20}
"""What a Messages client reads for 100 input tokens, 80 of them cached: input excludes cache reads."""


# == streams ============================================================================================
STREAM_CASES = [
    # -- a Responses client (Codex) ----------------------------------------------------------------
    pytest.param(
        RESPONSES,
        CHAT,
        R_PAIRS,
        S_CHAT_ONE_CHUNK,
        numbered(
            [
                *ev_start(),
                *ev_reasoning(0, "rs_1", ["Plan."]),
                *ev_message(1, "msg_1", ["Calling."]),
                *ev_call(2, "fc_1", "call_a", "exec_command", ['{"cmd"', ':"ls"}']),
                *ev_end(
                    [
                        rs_item("rs_1", "Plan."),
                        msg_item("msg_1", "Calling."),
                        fc_item("fc_1", "call_a", "exec_command", '{"cmd":"ls"}'),
                    ],
                    r_usage(100, 20, 80, 5),
                ),
            ]
        ),
        {
            "id": "resp_1",
            "status": "completed",
            "incomplete": None,
            "model": "up-model",
            "output": [
                {"type": "reasoning", "id": "rs_1", "summary": ["Plan."], "encrypted": None},
                {"type": "message", "id": "msg_1", "texts": ["Calling."]},
                {
                    "type": "function_call",
                    "id": "fc_1",
                    "call_id": "call_a",
                    "name": "exec_command",
                    "arguments": '{"cmd":"ls"}',
                    "namespace": None,
                },
            ],
            "usage": FULL_USAGE,
        },
        id="responses->chat:reasoning_and_content_in_one_chunk",
    ),
    pytest.param(
        RESPONSES,
        CHAT,
        R_CUSTOM,
        S_CHAT_PATCH,
        numbered(
            [
                *ev_start(),
                *ev_custom(0, "ctc_1", "call_p", "apply_patch", PATCH),
                *ev_end([ctc_item("ctc_1", "call_p", "apply_patch", PATCH)], r_usage(100, 20, 80, 5)),
            ]
        ),
        {
            "id": "resp_1",
            "status": "completed",
            "incomplete": None,
            "model": "up-model",
            "output": [
                {
                    "type": "custom_tool_call",
                    "id": "ctc_1",
                    "call_id": "call_p",
                    "name": "apply_patch",
                    "input": PATCH,
                }
            ],
            "usage": FULL_USAGE,
        },
        id="responses->chat:custom_tool_call_restored",
    ),
    pytest.param(
        RESPONSES,
        CHAT,
        R_NAMESPACE,
        S_CHAT_SPAWN,
        numbered(
            [
                *ev_start(),
                *ev_call(0, "fc_1", "call_s", "spawn_agent", ['{"task"', ':"docs"}'], "multi_agent_v1"),
                *ev_end(
                    [fc_item("fc_1", "call_s", "spawn_agent", '{"task":"docs"}', "multi_agent_v1")],
                    r_usage(100, 20, 80, 5),
                ),
            ]
        ),
        {
            "id": "resp_1",
            "status": "completed",
            "incomplete": None,
            "model": "up-model",
            "output": [
                {
                    "type": "function_call",
                    "id": "fc_1",
                    "call_id": "call_s",
                    "name": "spawn_agent",
                    "arguments": '{"task":"docs"}',
                    "namespace": "multi_agent_v1",
                }
            ],
            "usage": FULL_USAGE,
        },
        id="responses->chat:namespace_call_restored",
    ),
    pytest.param(
        RESPONSES,
        CHAT,
        R_PAIRS,
        S_CHAT_PARALLEL,
        numbered(
            [
                *ev_start(),
                *ev_reasoning(0, "rs_1", ["Two ", "calls."]),
                *ev_message(1, "msg_1", ["Running ", "both."]),
                *ev_call(2, "fc_1", "call_a", "exec_command", ['{"cmd":', '"ls"}']),
                *ev_call(3, "fc_2", "call_b", "exec_command", ['{"cmd":"pwd"}']),
                *ev_end(
                    [
                        rs_item("rs_1", "Two calls."),
                        msg_item("msg_1", "Running both."),
                        fc_item("fc_1", "call_a", "exec_command", '{"cmd":"ls"}'),
                        fc_item("fc_2", "call_b", "exec_command", '{"cmd":"pwd"}'),
                    ],
                    r_usage(100, 20, 80, 5),
                ),
            ]
        ),
        {
            "id": "resp_1",
            "status": "completed",
            "incomplete": None,
            "model": "up-model",
            "output": [
                {"type": "reasoning", "id": "rs_1", "summary": ["Two calls."], "encrypted": None},
                {"type": "message", "id": "msg_1", "texts": ["Running both."]},
                {
                    "type": "function_call",
                    "id": "fc_1",
                    "call_id": "call_a",
                    "name": "exec_command",
                    "arguments": '{"cmd":"ls"}',
                    "namespace": None,
                },
                {
                    "type": "function_call",
                    "id": "fc_2",
                    "call_id": "call_b",
                    "name": "exec_command",
                    "arguments": '{"cmd":"pwd"}',
                    "namespace": None,
                },
            ],
            "usage": FULL_USAGE,
        },
        id="responses->chat:parallel_calls",
    ),
    pytest.param(
        RESPONSES,
        CHAT,
        R_PAIRS,
        S_CHAT_INDEX_REUSED,
        numbered(
            [
                *ev_start(),
                *ev_call(0, "fc_1", "call_a", "exec_command", ['{"cmd":"ls"}']),
                *ev_call(1, "fc_2", "call_b", "exec_command", ['{"cmd":"pwd"}']),
                *ev_end(
                    [
                        fc_item("fc_1", "call_a", "exec_command", '{"cmd":"ls"}'),
                        fc_item("fc_2", "call_b", "exec_command", '{"cmd":"pwd"}'),
                    ],
                    r_usage(0, 0),
                ),
            ]
        ),
        {
            "id": "resp_1",
            "status": "completed",
            "incomplete": None,
            "model": "up-model",
            "output": [
                {
                    "type": "function_call",
                    "id": "fc_1",
                    "call_id": "call_a",
                    "name": "exec_command",
                    "arguments": '{"cmd":"ls"}',
                    "namespace": None,
                },
                {
                    "type": "function_call",
                    "id": "fc_2",
                    "call_id": "call_b",
                    "name": "exec_command",
                    "arguments": '{"cmd":"pwd"}',
                    "namespace": None,
                },
            ],
            "usage": {"input": 0, "cached": 0, "output": 0, "reasoning": 0, "total": 0},
        },
        id="responses->chat:local_server_reuses_index_0",
    ),
    pytest.param(
        RESPONSES,
        CHAT,
        R_PAIRS,
        S_CHAT_LENGTH,
        numbered(
            [
                *ev_start(),
                *ev_reasoning(0, "rs_1", ["Long."]),
                *ev_message(1, "msg_1", ["Cu", "t"]),
                *ev_end(
                    [rs_item("rs_1", "Long."), msg_item("msg_1", "Cut")],
                    r_usage(100, 20, 80, 5),
                    incomplete=True,
                ),
            ]
        ),
        {
            "id": "resp_1",
            "status": "incomplete",
            "incomplete": "max_output_tokens",
            "model": "up-model",
            "output": [
                {"type": "reasoning", "id": "rs_1", "summary": ["Long."], "encrypted": None},
                {"type": "message", "id": "msg_1", "texts": ["Cut"]},
            ],
            "usage": FULL_USAGE,
        },
        id="responses->chat:length_usage_incomplete",
    ),
    pytest.param(
        RESPONSES,
        MESSAGES,
        R_PAIRS,
        S_MESSAGES_TURN,
        numbered(
            [
                *ev_start(),
                *ev_reasoning(0, "rs_1", ["Two ", "calls."]),
                *ev_message(1, "msg_1", ["Running ", "both."]),
                *ev_call(2, "fc_1", "call_01A", "exec_command", ['{"cmd":', '"ls"}']),
                *ev_call(3, "fc_2", "call_01B", "exec_command", ['{"cmd":"pwd"}']),
                *ev_end(
                    [
                        rs_item("rs_1", "Two calls."),
                        msg_item("msg_1", "Running both."),
                        fc_item("fc_1", "call_01A", "exec_command", '{"cmd":"ls"}'),
                        fc_item("fc_2", "call_01B", "exec_command", '{"cmd":"pwd"}'),
                    ],
                    r_usage(100, 20, 80),
                ),
            ]
        ),
        {
            "id": "resp_1",
            "status": "completed",
            "incomplete": None,
            "model": "up-model",
            "output": [
                {"type": "reasoning", "id": "rs_1", "summary": ["Two calls."], "encrypted": None},
                {"type": "message", "id": "msg_1", "texts": ["Running both."]},
                {
                    "type": "function_call",
                    "id": "fc_1",
                    "call_id": "call_01A",
                    "name": "exec_command",
                    "arguments": '{"cmd":"ls"}',
                    "namespace": None,
                },
                {
                    "type": "function_call",
                    "id": "fc_2",
                    "call_id": "call_01B",
                    "name": "exec_command",
                    "arguments": '{"cmd":"pwd"}',
                    "namespace": None,
                },
            ],
            "usage": NO_REASONING_USAGE,
        },
        id="responses->messages:thinking_text_parallel_calls",
    ),
    pytest.param(
        RESPONSES,
        MESSAGES,
        R_CUSTOM,
        S_MESSAGES_PATCH,
        numbered(
            [
                *ev_start(),
                *ev_custom(0, "ctc_1", "call_p", "apply_patch", PATCH),
                *ev_end([ctc_item("ctc_1", "call_p", "apply_patch", PATCH)], r_usage(100, 20, 80)),
            ]
        ),
        {
            "id": "resp_1",
            "status": "completed",
            "incomplete": None,
            "model": "up-model",
            "output": [
                {
                    "type": "custom_tool_call",
                    "id": "ctc_1",
                    "call_id": "call_p",
                    "name": "apply_patch",
                    "input": PATCH,
                }
            ],
            "usage": NO_REASONING_USAGE,
        },
        id="responses->messages:custom_tool_call_restored",
    ),
    pytest.param(
        RESPONSES,
        MESSAGES,
        R_NAMESPACE,
        S_MESSAGES_SPAWN,
        numbered(
            [
                *ev_start(),
                *ev_call(0, "fc_1", "call_s", "spawn_agent", ['{"task":"docs"}'], "multi_agent_v1"),
                *ev_end(
                    [fc_item("fc_1", "call_s", "spawn_agent", '{"task":"docs"}', "multi_agent_v1")],
                    r_usage(100, 20, 80),
                ),
            ]
        ),
        {
            "id": "resp_1",
            "status": "completed",
            "incomplete": None,
            "model": "up-model",
            "output": [
                {
                    "type": "function_call",
                    "id": "fc_1",
                    "call_id": "call_s",
                    "name": "spawn_agent",
                    "arguments": '{"task":"docs"}',
                    "namespace": "multi_agent_v1",
                }
            ],
            "usage": NO_REASONING_USAGE,
        },
        id="responses->messages:namespace_call_restored",
    ),
    pytest.param(
        RESPONSES,
        MESSAGES,
        R_PAIRS,
        S_MESSAGES_LENGTH,
        numbered(
            [
                *ev_start(),
                *ev_message(0, "msg_1", ["Cu", "t"]),
                *ev_end([msg_item("msg_1", "Cut")], r_usage(100, 20, 80), incomplete=True),
            ]
        ),
        {
            "id": "resp_1",
            "status": "incomplete",
            "incomplete": "max_output_tokens",
            "model": "up-model",
            "output": [{"type": "message", "id": "msg_1", "texts": ["Cut"]}],
            "usage": NO_REASONING_USAGE,
        },
        id="responses->messages:max_tokens_usage_incomplete",
    ),
    pytest.param(
        RESPONSES,
        MESSAGES,
        R_PAIRS,
        S_MESSAGES_HOSTILE,
        numbered(
            [
                *ev_start(),
                *ev_message(0, "msg_1", ["Found", " it."]),
                *ev_end([msg_item("msg_1", "Found it.")], r_usage(10, 3)),
            ]
        ),
        {
            "id": "resp_1",
            "status": "completed",
            "incomplete": None,
            "model": "up-model",
            "output": [{"type": "message", "id": "msg_1", "texts": ["Found it."]}],
            "usage": {"input": 10, "cached": 0, "output": 3, "reasoning": 0, "total": 13},
        },
        id="responses->messages:hosted_blocks_and_junk_dropped",
    ),
    pytest.param(
        RESPONSES,
        MESSAGES,
        R_PAIRS,
        S_MESSAGES_INTERLEAVED_THINKING,
        numbered(
            [
                *ev_start(),
                *ev_reasoning(0, "rs_1", ["First."]),
                *ev_message(1, "msg_1", ["Checking."]),
                *ev_reasoning(2, "rs_2", ["Second."]),
                *ev_call(3, "fc_1", "call_01A", "exec_command", ['{"cmd":"ls"}']),
                *ev_end(
                    [
                        rs_item("rs_1", "First."),
                        msg_item("msg_1", "Checking."),
                        rs_item("rs_2", "Second."),
                        fc_item("fc_1", "call_01A", "exec_command", '{"cmd":"ls"}'),
                    ],
                    r_usage(100, 20, 80),
                ),
            ]
        ),
        {
            "id": "resp_1",
            "status": "completed",
            "incomplete": None,
            "model": "up-model",
            "output": [
                {"type": "reasoning", "id": "rs_1", "summary": ["First."], "encrypted": None},
                {"type": "message", "id": "msg_1", "texts": ["Checking."]},
                {"type": "reasoning", "id": "rs_2", "summary": ["Second."], "encrypted": None},
                {
                    "type": "function_call",
                    "id": "fc_1",
                    "call_id": "call_01A",
                    "name": "exec_command",
                    "arguments": '{"cmd":"ls"}',
                    "namespace": None,
                },
            ],
            "usage": NO_REASONING_USAGE,
        },
        id="responses->messages:interleaved_thinking_order_kept",
    ),
    pytest.param(
        RESPONSES,
        MESSAGES,
        R_PAIRS,
        S_MESSAGES_NO_ARGUMENTS,
        numbered(
            [
                *ev_start(),
                *ev_call(0, "fc_1", "call_n", "list_files", ["{}"]),
                *ev_end([fc_item("fc_1", "call_n", "list_files", "{}")], r_usage(100, 20, 80)),
            ]
        ),
        {
            "id": "resp_1",
            "status": "completed",
            "incomplete": None,
            "model": "up-model",
            "output": [
                {
                    "type": "function_call",
                    "id": "fc_1",
                    "call_id": "call_n",
                    "name": "list_files",
                    "arguments": "{}",
                    "namespace": None,
                }
            ],
            "usage": NO_REASONING_USAGE,
        },
        id="responses->messages:call_without_arguments_is_an_empty_object",
    ),
    # -- a Chat client (openai SDK apps) ------------------------------------------------------------
    pytest.param(
        CHAT,
        RESPONSES,
        C_STREAM,
        S_RESPONSES_TURN,
        [
            ROLE,
            out_chunk({"reasoning_content": "Two "}),
            out_chunk({"reasoning_content": "calls."}),
            out_chunk({"content": "Running "}),
            out_chunk({"content": "both."}),
            out_call(0, "call_a", "exec_command"),
            out_args(0, '{"cmd":'),
            out_args(0, '"ls"}'),
            out_call(1, "call_b", "exec_command"),
            out_args(1, '{"cmd":"pwd"}'),
            out_chunk({}, "tool_calls"),
            out_usage(100, 20, 80, 5),
            DONE,
        ],
        {
            "id": "chatcmpl-1",
            "model": "up-model",
            "finish_reason": "tool_calls",
            "content": "Running both.",
            "reasoning_content": "Two calls.",
            "tool_calls": [
                ("call_a", "function", "exec_command", '{"cmd":"ls"}'),
                ("call_b", "function", "exec_command", '{"cmd":"pwd"}'),
            ],
            "usage": FULL_USAGE,
        },
        id="chat->responses:reasoning_text_parallel_calls",
    ),
    pytest.param(
        CHAT,
        RESPONSES,
        C_STREAM,
        S_RESPONSES_INCOMPLETE,
        [
            ROLE,
            out_chunk({"content": "Cu"}),
            out_chunk({"content": "t"}),
            out_chunk({}, "length"),
            out_usage(100, 20, 80, 5),
            DONE,
        ],
        {
            "id": "chatcmpl-1",
            "model": "up-model",
            "finish_reason": "length",
            "content": "Cut",
            "reasoning_content": None,
            "tool_calls": [],
            "usage": FULL_USAGE,
        },
        id="chat->responses:incomplete_usage",
    ),
    pytest.param(
        CHAT,
        MESSAGES,
        C_STREAM,
        S_MESSAGES_TURN,
        [
            ROLE,
            out_chunk({"reasoning_content": "Two "}),
            out_chunk({"reasoning_content": "calls."}),
            out_chunk({"content": "Running "}),
            out_chunk({"content": "both."}),
            out_call(0, "call_01A", "exec_command"),
            out_args(0, '{"cmd":'),
            out_args(0, '"ls"}'),
            out_call(1, "call_01B", "exec_command"),
            out_args(1, '{"cmd":"pwd"}'),
            out_chunk({}, "tool_calls"),
            out_usage(100, 20, 80),
            DONE,
        ],
        {
            "id": "chatcmpl-1",
            "model": "up-model",
            "finish_reason": "tool_calls",
            "content": "Running both.",
            "reasoning_content": "Two calls.",
            "tool_calls": [
                ("call_01A", "function", "exec_command", '{"cmd":"ls"}'),
                ("call_01B", "function", "exec_command", '{"cmd":"pwd"}'),
            ],
            "usage": NO_REASONING_USAGE,
        },
        id="chat->messages:thinking_text_parallel_calls",
    ),
    pytest.param(
        CHAT,
        MESSAGES,
        C_STREAM,
        S_MESSAGES_LENGTH,
        [
            ROLE,
            out_chunk({"content": "Cu"}),
            out_chunk({"content": "t"}),
            out_chunk({}, "length"),
            out_usage(100, 20, 80),
            DONE,
        ],
        {
            "id": "chatcmpl-1",
            "model": "up-model",
            "finish_reason": "length",
            "content": "Cut",
            "reasoning_content": None,
            "tool_calls": [],
            "usage": NO_REASONING_USAGE,
        },
        id="chat->messages:max_tokens_usage",
    ),
    pytest.param(
        CHAT,
        MESSAGES,
        C_CUSTOM_STREAM,
        S_MESSAGES_PATCH,
        [
            ROLE,
            out_chunk(
                {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "call_p",
                            "type": "custom",
                            "custom": {"name": "apply_patch", "input": ""},
                        }
                    ]
                }
            ),
            out_chunk({"tool_calls": [{"index": 0, "custom": {"input": PATCH}}]}),
            out_chunk({}, "tool_calls"),
            out_usage(100, 20, 80),
            DONE,
        ],
        None,  # the openai SDK's chat stream helper cannot accumulate a custom tool call (its own limit)
        id="chat->messages:custom_tool_call_restored",
    ),
    pytest.param(
        CHAT,
        MESSAGES,
        C_STREAM,
        S_MESSAGES_HOSTILE,
        [
            ROLE,
            out_chunk({"content": "Found"}),
            out_chunk({"content": " it."}),
            out_chunk({}, "stop"),
            out_usage(10, 3),
            DONE,
        ],
        {
            "id": "chatcmpl-1",
            "model": "up-model",
            "finish_reason": "stop",
            "content": "Found it.",
            "reasoning_content": None,
            "tool_calls": [],
            "usage": {"input": 10, "cached": 0, "output": 3, "reasoning": 0, "total": 13},
        },
        id="chat->messages:hosted_blocks_and_junk_dropped",
    ),
    pytest.param(
        CHAT,
        MESSAGES,
        C_STREAM,
        S_MESSAGES_NO_ARGUMENTS,
        [
            ROLE,
            out_call(0, "call_n", "list_files"),
            out_args(0, "{}"),
            out_chunk({}, "tool_calls"),
            out_usage(100, 20, 80),
            DONE,
        ],
        {
            "id": "chatcmpl-1",
            "model": "up-model",
            "finish_reason": "tool_calls",
            "content": "",
            "reasoning_content": None,
            "tool_calls": [("call_n", "function", "list_files", "{}")],
            "usage": NO_REASONING_USAGE,
        },
        id="chat->messages:call_without_arguments_is_an_empty_object",
    ),
    # -- a Messages client (Claude Code) ------------------------------------------------------------
    pytest.param(
        MESSAGES,
        CHAT,
        M_PAIRS,
        S_CHAT_ONE_CHUNK,
        named(
            [
                m_start(79),
                *m_thinking(0, ["Plan."]),
                *m_text(1, ["Calling."]),
                *m_tool(2, "toolu_a", "exec_command", ['{"cmd"', ':"ls"}']),
                *m_end("tool_use", 20, 20, 80),
            ]
        ),
        {
            "id": "msg_1",
            "model": "up-model",
            "stop_reason": "tool_use",
            "content": [
                ("thinking", "Plan.", ""),
                ("text", "Calling."),
                ("tool_use", "toolu_a", "exec_command", {"cmd": "ls"}),
            ],
            "usage": ANTHROPIC_USAGE,
        },
        id="messages->chat:reasoning_and_content_in_one_chunk",
    ),
    pytest.param(
        MESSAGES,
        CHAT,
        M_PAIRS,
        S_CHAT_PARALLEL,
        named(
            [
                m_start(79),
                *m_thinking(0, ["Two ", "calls."]),
                *m_text(1, ["Running ", "both."]),
                *m_tool(2, "toolu_a", "exec_command", ['{"cmd":', '"ls"}']),
                *m_tool(3, "toolu_b", "exec_command", ['{"cmd":"pwd"}']),
                *m_end("tool_use", 20, 20, 80),
            ]
        ),
        {
            "id": "msg_1",
            "model": "up-model",
            "stop_reason": "tool_use",
            "content": [
                ("thinking", "Two calls.", ""),
                ("text", "Running both."),
                ("tool_use", "toolu_a", "exec_command", {"cmd": "ls"}),
                ("tool_use", "toolu_b", "exec_command", {"cmd": "pwd"}),
            ],
            "usage": ANTHROPIC_USAGE,
        },
        id="messages->chat:parallel_calls_distinct_blocks",
    ),
    pytest.param(
        MESSAGES,
        CHAT,
        M_PAIRS,
        S_CHAT_REASONING_ORDER,
        named(
            [
                m_start(79),
                *m_thinking(0, ["First."]),
                *m_text(1, ["Then "]),
                *m_thinking(2, ["Second."]),
                *m_text(3, ["done."]),
                *m_end("end_turn", 20, 20, 80),
            ]
        ),
        {
            "id": "msg_1",
            "model": "up-model",
            "stop_reason": "end_turn",
            "content": [
                ("thinking", "First.", ""),
                ("text", "Then "),
                ("thinking", "Second.", ""),
                ("text", "done."),
            ],
            "usage": ANTHROPIC_USAGE,
        },
        id="messages->chat:reasoning_order_kept",
    ),
    pytest.param(
        MESSAGES,
        CHAT,
        M_PAIRS,
        S_CHAT_INDEX_REUSED,
        named(
            [
                m_start(79),
                *m_tool(0, "toolu_a", "exec_command", ['{"cmd":"ls"}']),
                *m_tool(1, "toolu_b", "exec_command", ['{"cmd":"pwd"}']),
                *m_end("tool_use", 0, 79),
            ]
        ),
        {
            "id": "msg_1",
            "model": "up-model",
            "stop_reason": "tool_use",
            "content": [
                ("tool_use", "toolu_a", "exec_command", {"cmd": "ls"}),
                ("tool_use", "toolu_b", "exec_command", {"cmd": "pwd"}),
            ],
            "usage": {"input": 79, "cache_read": 0, "cache_write": 0, "output": 0},
        },
        id="messages->chat:local_server_reuses_index_0",
    ),
    pytest.param(
        MESSAGES,
        CHAT,
        M_PAIRS,
        S_CHAT_LENGTH,
        named(
            [
                m_start(79),
                *m_thinking(0, ["Long."]),
                *m_text(1, ["Cu", "t"]),
                *m_end("max_tokens", 20, 20, 80),
            ]
        ),
        {
            "id": "msg_1",
            "model": "up-model",
            "stop_reason": "max_tokens",
            "content": [("thinking", "Long.", ""), ("text", "Cut")],
            "usage": ANTHROPIC_USAGE,
        },
        id="messages->chat:length_usage",
    ),
    pytest.param(
        MESSAGES,
        CHAT,
        M_PAIRS,
        S_CHAT_STOP_NO_DONE,
        named(
            [m_start(79), *m_tool(0, "toolu_a", "exec_command", ['{"cmd":"ls"}']), *m_end("tool_use", 9, 30)]
        ),
        {
            "id": "msg_1",
            "model": "up-model",
            "stop_reason": "tool_use",
            "content": [("tool_use", "toolu_a", "exec_command", {"cmd": "ls"})],
            "usage": {"input": 30, "cache_read": 0, "cache_write": 0, "output": 9},
        },
        id="messages->chat:stop_after_tool_call_without_done",
    ),
    pytest.param(
        MESSAGES,
        CHAT,
        M_PAIRS,
        S_CHAT_INTERLEAVED,
        named(
            [
                m_start(79),
                *m_tool(0, "toolu_a", "exec_command", ['{"cmd":', '"ls"}']),
                *m_tool(1, "toolu_b", "exec_command", ['{"cmd":"pwd"}']),
                *m_end("tool_use", 0, 79),
            ]
        ),
        {
            "id": "msg_1",
            "model": "up-model",
            "stop_reason": "tool_use",
            "content": [
                ("tool_use", "toolu_a", "exec_command", {"cmd": "ls"}),
                ("tool_use", "toolu_b", "exec_command", {"cmd": "pwd"}),
            ],
            "usage": {"input": 79, "cache_read": 0, "cache_write": 0, "output": 0},
        },
        id="messages->chat:interleaved_parallel_call_arguments",
    ),
    pytest.param(
        MESSAGES,
        CHAT,
        M_PAIRS,
        S_CHAT_HOSTILE,
        named([m_start(79), *m_text(0, ["Hi", " there"]), *m_end("end_turn", 2, 10)]),
        {
            "id": "msg_1",
            "model": "up-model",
            "stop_reason": "end_turn",
            "content": [("text", "Hi there")],
            "usage": {"input": 10, "cache_read": 0, "cache_write": 0, "output": 2},
        },
        id="messages->chat:hostile_chunks_dropped",
    ),
    pytest.param(
        MESSAGES,
        RESPONSES,
        M_PAIRS,
        S_RESPONSES_TURN,
        named(
            [
                m_start(79),
                *m_thinking(0, ["Two ", "calls."]),
                *m_text(1, ["Running ", "both."]),
                *m_tool(2, "toolu_a", "exec_command", ['{"cmd":', '"ls"}']),
                *m_tool(3, "toolu_b", "exec_command", ['{"cmd":"pwd"}']),
                *m_end("tool_use", 20, 20, 80),
            ]
        ),
        {
            "id": "msg_1",
            "model": "up-model",
            "stop_reason": "tool_use",
            "content": [
                ("thinking", "Two calls.", ""),
                ("text", "Running both."),
                ("tool_use", "toolu_a", "exec_command", {"cmd": "ls"}),
                ("tool_use", "toolu_b", "exec_command", {"cmd": "pwd"}),
            ],
            "usage": ANTHROPIC_USAGE,
        },
        id="messages->responses:reasoning_text_parallel_calls",
    ),
    pytest.param(
        MESSAGES,
        RESPONSES,
        M_PAIRS,
        S_RESPONSES_INCOMPLETE,
        named([m_start(79), *m_text(0, ["Cu", "t"]), *m_end("max_tokens", 20, 20, 80)]),
        {
            "id": "msg_1",
            "model": "up-model",
            "stop_reason": "max_tokens",
            "content": [("text", "Cut")],
            "usage": ANTHROPIC_USAGE,
        },
        id="messages->responses:incomplete_usage",
    ),
    pytest.param(
        MESSAGES,
        RESPONSES,
        M_PAIRS,
        S_RESPONSES_HOSTILE,
        named([m_start(79), *m_text(0, ["Hi"]), *m_end("end_turn", 2, 10)]),
        {
            "id": "msg_1",
            "model": "up-model",
            "stop_reason": "end_turn",
            "content": [("text", "Hi")],
            "usage": {"input": 10, "cache_read": 0, "cache_write": 0, "output": 2},
        },
        id="messages->responses:hostile_events_dropped",
    ),
]


def direction_id(value: Any) -> str:
    return SHORT[value] if isinstance(value, Api) else str(value)


def _select(cases: list[Any], column: int, keep_marks: bool = True, client: Api | None = None) -> list[Any]:
    """The stream cases with an expectation in ``column`` (the wire: 4, the SDK's view: 5)."""
    out = []
    for case in cases:
        values = case.values
        if values[column] is None or (client is not None and values[0] is not client):
            continue
        marks = case.marks if keep_marks else ()
        out.append(pytest.param(*values[:4], values[column], id=case.id, marks=marks))
    return out


def stream_context(client: Api, body: JSON) -> Any:
    """The context the gateway gives a client's answer: its usage wish and the input estimate."""
    request = decode_request(client, body)
    return client_context(
        include_usage=request.include_usage, estimated_input_tokens=estimate_input_tokens(request)
    )


def client_stream(client: Api, upstream: Api, body: JSON, upstream_bytes: bytes, piece: int = 0) -> bytes:
    tools = tool_map(client, upstream, body)
    return translate_stream(upstream, client, upstream_bytes, tools, stream_context(client, body), piece)


# == the tests: requests ==============================================================================
@pytest.mark.parametrize(("client", "upstream", "body", "expected", "omitted"), REQUEST_CASES)
def test_request(client: Api, upstream: Api, body: JSON, expected: JSON, omitted: tuple[str, ...]) -> None:
    encoded = translate_request(client, upstream, body)
    assert upstream_body(encoded) == expected
    assert encoded.omitted == omitted


UNCARRIABLE_CASES = [
    pytest.param(
        RESPONSES,
        CHAT,
        R_HOSTED_CHOICE,
        ANY_FIT,
        "tool_choice requires the hosted tool 'web_search'",
        id="responses->chat:tool_choice_requires_hosted_tool",
    ),
    pytest.param(
        RESPONSES,
        MESSAGES,
        R_HOSTED_CHOICE,
        ANY_FIT,
        "tool_choice requires the hosted tool 'web_search'",
        id="responses->messages:tool_choice_requires_hosted_tool",
    ),
    pytest.param(
        MESSAGES,
        CHAT,
        M_HOSTED_CHOICE,
        ANY_FIT,
        "tool_choice requires the hosted tool 'web_search'",
        id="messages->chat:tool_choice_requires_hosted_tool",
    ),
    pytest.param(
        MESSAGES,
        RESPONSES,
        M_HOSTED_CHOICE,
        ANY_FIT,
        "tool_choice requires the hosted tool 'web_search'",
        id="messages->responses:tool_choice_requires_hosted_tool",
    ),
    pytest.param(
        RESPONSES,
        CHAT,
        {**R_HOSTED, "previous_response_id": "resp_prev"},
        ANY_FIT,
        "previous_response_id",
        id="responses->chat:previous_response_id",
    ),
    pytest.param(
        RESPONSES,
        MESSAGES,
        {**R_HOSTED, "previous_response_id": "resp_prev"},
        ANY_FIT,
        "previous_response_id",
        id="responses->messages:previous_response_id",
    ),
    pytest.param(CHAT, RESPONSES, C_MANY, ANY_FIT, "n > 1 choices", id="chat->responses:n_choices"),
    pytest.param(CHAT, MESSAGES, C_MANY, ANY_FIT, "n > 1 choices", id="chat->messages:n_choices"),
    pytest.param(
        CHAT,
        MESSAGES,
        C_CARRIED,
        Fit(images=False),
        "capabilities.images: false",
        id="chat->messages:image_on_a_text_route",
    ),
    pytest.param(
        MESSAGES,
        RESPONSES,
        M_CARRIED,
        Fit(images=False),
        "capabilities.images: false",
        id="messages->responses:tool_result_image_on_a_text_route",
    ),
    pytest.param(
        MESSAGES,
        CHAT,
        M_PAIRS,
        Fit(tools=False),
        "capabilities.tools: false",
        id="messages->chat:tools_on_a_route_without",
    ),
]


@pytest.mark.parametrize(("client", "upstream", "body", "fit", "reason"), UNCARRIABLE_CASES)
def test_uncarriable(client: Api, upstream: Api, body: JSON, fit: Fit, reason: str) -> None:
    with pytest.raises(Uncarriable, match=re.escape(reason)):
        translate_request(client, upstream, body, fit=fit)


CLIENT_BODIES: dict[Api, list[JSON]] = {
    RESPONSES: [R_CUSTOM, R_NAMESPACE, R_HOSTED, R_PAIRS, R_SYSTEM, R_CARRIED, R_CACHE, R_REASONING],
    CHAT: [C_PAIRS, C_SYSTEM, C_CARRIED, C_CUSTOM, C_CACHE],
    MESSAGES: [M_PAIRS, M_CARRIED, M_HOSTED],
}


@pytest.mark.parametrize(("client", "upstream"), DIRECTIONS, ids=direction_id)
def test_same_request_same_bytes(client: Api, upstream: Api) -> None:
    """Prompt caching: the same client body always gives the same upstream bytes."""
    for body in CLIENT_BODIES[client]:
        first = translate_request(client, upstream, copy.deepcopy(body)).body
        assert translate_request(client, upstream, copy.deepcopy(body)).body == first


# The next turn of each PAIRS conversation: the answer to the tool results, and a new question.
NEXT_TURN: dict[Api, tuple[JSON, list[JSON]]] = {
    RESPONSES: (
        R_PAIRS,
        [
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Done."}]},
            r_user("Next."),
        ],
    ),
    CHAT: (C_PAIRS, [{"role": "assistant", "content": "Done."}, {"role": "user", "content": "Next."}]),
    MESSAGES: (M_PAIRS, [{"role": "assistant", "content": "Done."}, {"role": "user", "content": "Next."}]),
}


@pytest.mark.parametrize(("client", "upstream"), DIRECTIONS, ids=direction_id)
def test_next_turn_keeps_the_cached_prefix(client: Api, upstream: Api) -> None:
    """Prompt caching: a conversation one turn longer is sent as the same bytes plus the new turn
    (system, tools and every earlier message unchanged, in place)."""
    body, more = NEXT_TURN[client]
    key = "input" if client is RESPONSES else "messages"
    longer = {**body, key: [*body[key], *more]}
    before = upstream_body(translate_request(client, upstream, body))
    after = upstream_body(translate_request(client, upstream, longer))
    old, new = history(upstream, before), history(upstream, after)
    assert new[: len(old)] == old
    assert len(new) > len(old)
    field = "input" if upstream is RESPONSES else "messages"
    assert {k: v for k, v in after.items() if k != field} == {k: v for k, v in before.items() if k != field}


PAIRS_BODIES: dict[Api, JSON] = {RESPONSES: R_PAIRS, CHAT: C_PAIRS, MESSAGES: M_PAIRS}


@pytest.mark.parametrize(("client", "upstream"), DIRECTIONS, ids=direction_id)
def test_every_output_keeps_its_call(client: Api, upstream: Api) -> None:
    """Never "No tool call found for function call output": in the upstream's body every result
    answers a call made before it (Anthropic: in the message right after), every call is answered,
    and the client's pairs are the upstream's, one for one (Anthropic's ids cleaned the same way in
    the call and its result)."""
    body = PAIRS_BODIES[client]
    sent_body = upstream_body(translate_request(client, upstream, body))
    assert unpaired(upstream, sent_body) == []
    sent, given = tool_links(upstream, sent_body), tool_links(client, body)
    assert [kind for kind, _, _ in sent] == [kind for kind, _, _ in given]
    renamed = {g: s for (_, g, _), (_, s, _) in zip(given, sent, strict=True)}
    assert len(set(renamed.values())) == len(renamed)
    assert all(
        s == g or (upstream is MESSAGES and s == re.sub(r"[^a-zA-Z0-9_-]", "_", g))
        for g, s in renamed.items()
    )


# == the tests: whole answers ===========================================================================
@pytest.mark.parametrize(("client", "upstream", "body", "payload", "expected"), RESPONSE_CASES)
def test_response(client: Api, upstream: Api, body: JSON, payload: JSON, expected: JSON) -> None:
    assert translate_response(upstream, client, payload, tool_map(client, upstream, body)) == expected


# == the tests: streams ==================================================================================
@pytest.mark.parametrize(("client", "upstream", "body", "stream", "expected"), _select(STREAM_CASES, 4))
def test_stream_events(client: Api, upstream: Api, body: JSON, stream: bytes, expected: Wire) -> None:
    out = client_stream(client, upstream, body, stream)
    assert wire(out) == expected
    assert client_stream(client, upstream, body, stream, piece=5) == out  # split anywhere: same bytes


@pytest.mark.parametrize(("client", "upstream", "body", "stream", "expected"), _select(STREAM_CASES, 5))
def test_stream_read_by_the_sdk(
    client: Api, upstream: Api, body: JSON, stream: bytes, expected: JSON
) -> None:
    final = SDK_FINAL[client](client_stream(client, upstream, body, stream))
    assert final_fields(client, final) == expected


@pytest.mark.parametrize(
    ("client", "upstream", "body", "stream", "_"), _select(STREAM_CASES, 5, keep_marks=False, client=MESSAGES)
)
def test_claude_code_grammar(client: Api, upstream: Api, body: JSON, stream: bytes, _: Any) -> None:
    """What Claude Code needs: ``message_start`` with a non-zero input estimate, every delta for the
    block open at its index ("Content block not found" otherwise), blocks numbered 0, 1, 2… and all
    stopped, one ``message_delta`` with the stop reason and the usage, ``message_stop`` last."""
    events = [payload for _, payload in wire(client_stream(client, upstream, body, stream))]
    assert events[0]["type"] == "message_start"
    assert (
        events[0]["message"]["usage"]["input_tokens"]
        == stream_context(client, body).estimated_input_tokens
        > 0
    )
    open_index: int | None = None
    started = 0
    for event in events[1:-2]:
        if event["type"] == "content_block_start":
            assert open_index is None and event["index"] == started
            open_index, started = event["index"], started + 1
        elif event["type"] == "content_block_delta":
            assert event["index"] == open_index
        else:
            assert event == {"type": "content_block_stop", "index": open_index}
            open_index = None
    assert open_index is None
    delta, stop = events[-2:]
    assert delta["type"] == "message_delta" and stop == {"type": "message_stop"}
    assert delta["delta"]["stop_reason"] in ("end_turn", "tool_use", "max_tokens")
    assert set(delta["usage"]) == {
        "input_tokens",
        "output_tokens",
        "cache_read_input_tokens",
        "cache_creation_input_tokens",
    }


@pytest.mark.parametrize(
    ("client", "upstream", "body", "stream", "_"),
    _select(STREAM_CASES, 5, keep_marks=False, client=RESPONSES),
)
def test_codex_grammar(client: Api, upstream: Api, body: JSON, stream: bytes, _: Any) -> None:
    """What Codex needs: numbered events, each delta for the item open at its output index, every
    tool item's ``call_id`` set (never empty) and the same in added, done and the final output."""
    events = [payload for _, payload in wire(client_stream(client, upstream, body, stream))]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert [e["type"] for e in events[:2]] == ["response.created", "response.in_progress"]
    open_item: JSON | None = None
    done: list[JSON] = []
    for event in events[2:-1]:
        if event["type"] == "response.output_item.added":
            assert open_item is None and event["output_index"] == len(done)
            open_item = event["item"]
        elif event["type"] == "response.output_item.done":
            assert open_item is not None and event["item"]["id"] == open_item["id"]
            if open_item["type"] in ("function_call", "custom_tool_call"):
                assert event["item"]["call_id"] == open_item["call_id"] != ""
                assert event["item"]["call_id"].startswith("call_")
            done.append(event["item"])
            open_item = None
        else:
            assert open_item is not None and event["item_id"] == open_item["id"]
    assert open_item is None
    assert events[-1]["type"] in ("response.completed", "response.incomplete")
    assert events[-1]["response"]["output"] == done


@pytest.mark.parametrize(
    ("client", "upstream", "body", "stream", "_"), _select(STREAM_CASES, 4, keep_marks=False, client=CHAT)
)
def test_chat_tool_indexes(client: Api, upstream: Api, body: JSON, stream: bytes, _: Any) -> None:
    """Chat tool-call deltas: each new call takes the next index (0, 1…), its id given once; one
    finish chunk; ``[DONE]`` last."""
    chunks = wire(client_stream(client, upstream, body, stream))
    assert chunks[-1] == DONE
    ids: list[str] = []
    finishes = 0
    for _name, chunk in chunks[:-1]:
        for choice in chunk["choices"]:
            finishes += choice["finish_reason"] is not None
            for call in choice["delta"].get("tool_calls", []):
                if "id" in call:
                    assert call["index"] == len(ids) and call["id"] not in ids and call["id"]
                    ids.append(call["id"])
                else:
                    assert call["index"] == len(ids) - 1
    assert finishes == 1


S_CHAT_NO_ID = upstream_sse(
    CHAT,
    [
        chat_chunk({"role": "assistant"}),
        chat_chunk(chat_call(0, None, "exec_command", '{"cmd":"ls"}')),
        chat_chunk({}, "tool_calls"),
        "[DONE]",
    ],
)
S_RESPONSES_NO_CALL_ID = upstream_sse(
    RESPONSES,
    [
        {**event, "item": {k: v for k, v in event["item"].items() if k != "call_id"}}
        if "item" in event
        else event
        for event in responses_events(UpPlan((UpTool("", "exec_command", ('{"cmd":"ls"}',)),), "tool_calls"))
    ],
)
"""A compatible upstream whose function_call items have no ``call_id`` (only the item id ``fc_up0``)."""


@pytest.mark.parametrize(
    ("client", "upstream", "stream", "prefix"),
    [
        pytest.param(RESPONSES, CHAT, S_CHAT_NO_ID, "call_", id="responses->chat"),
        pytest.param(MESSAGES, CHAT, S_CHAT_NO_ID, "toolu_", id="messages->chat"),
        pytest.param(CHAT, RESPONSES, S_RESPONSES_NO_CALL_ID, "call_", id="chat->responses"),
        pytest.param(MESSAGES, RESPONSES, S_RESPONSES_NO_CALL_ID, "toolu_", id="messages->responses"),
    ],
)
def test_a_call_without_an_id_gets_one(client: Api, upstream: Api, stream: bytes, prefix: str) -> None:
    """An upstream call with no id reaches the client with one of the client's format, never empty."""
    bodies: dict[Api, JSON] = {RESPONSES: R_PAIRS, CHAT: C_STREAM, MESSAGES: M_PAIRS}
    body = bodies[client]
    _text, calls = final_text_and_calls(
        client, SDK_FINAL[client](client_stream(client, upstream, body, stream))
    )
    ((call_id, name, arguments),) = calls
    assert call_id.startswith(prefix) and len(call_id) > len(prefix)
    assert (name, orjson.loads(arguments)) == ("exec_command", {"cmd": "ls"})
