using IotDsd.Core.Sessions;

namespace IotDsd.Core.Tests;

/// <summary>The one placement of streamed tokens, used by the streamed rung and the server-only baseline.</summary>
public sealed class TokenPlacementTests
{
    [Fact]
    public void Place_CommitsInOrder_EarlyTokensWaitForTheGap()
    {
        var committed = new List<int> { 7, 8 };
        var placement = new TokenPlacement(committed, end: 6, vocab: 100);

        Assert.Equal(0, placement.Place(4, [40, 50]));
        Assert.Equal([7, 8], committed);
        Assert.Equal(4, placement.Held);

        Assert.Equal(4, placement.Place(2, [20, 30]));
        Assert.Equal([7, 8, 20, 30, 40, 50], committed);
        Assert.Equal(0, placement.Duplicates);
    }

    [Fact]
    public void Place_DuplicatesAreCountedAndIgnored()
    {
        var committed = new List<int>();
        var placement = new TokenPlacement(committed, end: 4, vocab: 100);
        placement.Place(0, [1, 2]);
        placement.Place(3, [4]);

        Assert.Equal(2, placement.Place(1, [2, 3])); // 2 again; 3 new, and 4, held early, joins after it
        Assert.Equal(0, placement.Place(3, [4]));

        Assert.Equal([1, 2, 3, 4], committed);
        Assert.Equal(2, placement.Duplicates);
    }

    [Theory]
    [InlineData(1, new[] { 9 })]      // conflicts with a committed token
    [InlineData(3, new[] { 9 })]      // conflicts with a token waiting for the gap
    [InlineData(-1, new[] { 1 })]     // before the sequence
    [InlineData(4, new[] { 5, 6 })]   // past the end of the stream
    [InlineData(2, new[] { 100 })]    // outside the vocabulary
    [InlineData(2, new[] { -1 })]
    public void Place_ViolationThrows_AndChangesNothing(int index, int[] tokens)
    {
        var committed = new List<int>();
        var placement = new TokenPlacement(committed, end: 5, vocab: 100);
        placement.Place(0, [1, 2]);
        placement.Place(3, [4]);

        Assert.Throws<ProtocolViolationException>(() => placement.Place(index, tokens));

        Assert.Equal([1, 2], committed);
        Assert.Equal(3, placement.Held);
        Assert.Equal(0, placement.Duplicates);
        Assert.Equal(2, placement.Place(2, [3])); // the stream goes on from where it was
    }
}
