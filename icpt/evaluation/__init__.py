"""The evaluation of ICPT against its ablations and baselines: the run (`harness`), the methods (`methods`), scoring
(`scoring`), intervals and paired tests (`statistics`) and plots (`plots`)."""
