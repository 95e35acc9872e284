# A tool that writes a line to stdout every second (and one to stderr): the log viewer follows it.
cwlVersion: v1.2
class: CommandLineTool
requirements:
  ShellCommandRequirement: {}
inputs: []
arguments:
  - valueFrom: "echo starting >&2; for i in 1 2 3 4 5 6 7 8; do echo tick $i; sleep 1; done; echo done"
    shellQuote: false
outputs: []
