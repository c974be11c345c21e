"""The one-step flow the batch benchmarks run (memory.py, throughput.py): a question in, the answer out."""

ASK = """\
name: ask
model: gpt-4o-mini
inputs:
  question: {type: string}
steps:
  - id: answer
    messages:
      - {role: user, content: "{{ inputs.question }}"}
"""
