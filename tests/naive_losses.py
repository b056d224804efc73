"""Independent references for the InfoNCE terms: explicit sums of exp/log over python loops
(no cross_entropy, no logsumexp), differentiable, so values and gradients can be compared."""

import torch


def naive_hn(q, p, n, tau):
    total = 0
    for i in range(q.shape[0]):
        pos = torch.exp(torch.dot(q[i], p[i]) / tau)
        negs = sum(torch.exp(torch.dot(q[i], n[i, j]) / tau) for j in range(n.shape[1]))
        total = total - torch.log(pos / (pos + negs))
    return total / q.shape[0]


def naive_ib(q, p_all, tau, offset=0):
    total = 0
    for i in range(q.shape[0]):
        row = [torch.exp(torch.dot(q[i], p_all[m]) / tau) for m in range(p_all.shape[0])]
        total = total - torch.log(row[offset + i] / sum(row))
    return total / q.shape[0]


def unit(x):
    return x / torch.sqrt((x * x).sum(-1, keepdim=True))
