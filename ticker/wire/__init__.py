"""What crosses the Redis hop and the socket: the message shapes both processes agree on.

Imported by every side; imports nothing from ticker but the price model's value types.
"""
