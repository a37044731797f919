namespace IotDsd.Sim.Engine;

/// <summary>What happens at an event.</summary>
internal enum EventKind : byte
{
    StartRequest,
    Opened,
    DraftDone,
    AtVerifier,
    BatchStart,
    BatchDone,
    AtDevice,
    FollowUpDone,
    StreamAtDevice,
}

/// <summary>One scheduled event; ties on time break by insertion order, so runs are deterministic.</summary>
internal readonly record struct SimEvent(double Time, long Seq, EventKind Kind, int Id, int Arg);

/// <summary>A binary min-heap of events on a flat array: no allocation per event once grown.</summary>
internal sealed class EventQueue
{
    private SimEvent[] _heap = new SimEvent[1024];
    private long _seq;

    public int Count { get; private set; }

    public void Push(double time, EventKind kind, int id, int arg = 0)
    {
        if (Count == _heap.Length)
        {
            Array.Resize(ref _heap, _heap.Length * 2);
        }

        var e = new SimEvent(time, _seq++, kind, id, arg);
        var i = Count++;
        while (i > 0)
        {
            var parent = (i - 1) >> 1;
            if (!Less(e, _heap[parent]))
            {
                break;
            }

            _heap[i] = _heap[parent];
            i = parent;
        }

        _heap[i] = e;
    }

    public SimEvent Pop()
    {
        var top = _heap[0];
        var last = _heap[--Count];
        var i = 0;
        while (true)
        {
            var child = (2 * i) + 1;
            if (child >= Count)
            {
                break;
            }

            if (child + 1 < Count && Less(_heap[child + 1], _heap[child]))
            {
                child++;
            }

            if (!Less(_heap[child], last))
            {
                break;
            }

            _heap[i] = _heap[child];
            i = child;
        }

        if (Count > 0)
        {
            _heap[i] = last;
        }

        return top;
    }

    private static bool Less(in SimEvent a, in SimEvent b) => a.Time < b.Time || (a.Time == b.Time && a.Seq < b.Seq);
}
