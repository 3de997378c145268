"""The runner (Pulumi Automation API) behind tools/lvslab.py and the Makefile: one module per concern
(cli, lab commands, ephemeral runs and their slots, signal guard, artefacts, runtime faults)."""
