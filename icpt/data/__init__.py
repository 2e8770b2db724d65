"""Episodes from outside the generated world: the public benchmarks in their published layouts (`benchmarks`), and a
user's own photos (`folders`: a folder per concept; `user_episodes`: training episodes from them)."""
