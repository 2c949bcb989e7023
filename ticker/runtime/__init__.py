"""Process plumbing shared by every process: Redis clients, the launcher, garbage-collection scheduling and
cancellation. Imports nothing from the market, hub or edge.
"""
