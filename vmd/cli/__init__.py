"""Entry points: vmd daemon | vmd agent | vmctl | the simulator commands."""
