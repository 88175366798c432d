"""Traffic simulation (issue 16, in progress): ``tntp`` reads the standard research networks (TNTP format)."""
