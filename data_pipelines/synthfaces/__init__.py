"""SynthFaces: procedural faces with weakly correlated, crawled-alt-text-like captions."""
