"""Skills: folders with a SKILL.md that add context and, optionally, a runnable tool."""
