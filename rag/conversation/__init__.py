"""Conversations: a follow-up question turned into one that retrieval and the answer cache can take alone.

``rules`` decides without a model whether a question leans on the conversation; ``history`` renders the
earlier turns within a token bound (older turns summarized once and reused); ``rewriter`` asks the cheap
tier for the standalone question and counts what that cost.
"""
