"""The benchmark of issue 4: a synthetic DNS world, three contenders and a load driver."""
