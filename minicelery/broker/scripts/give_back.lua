-- Give back everything hold KEYS[1] has (a lost or departed consumer's, on a cluster: one
-- queue's hold at a time, in that queue's slot). Returns how many messages.
return give_back(KEYS[1])
