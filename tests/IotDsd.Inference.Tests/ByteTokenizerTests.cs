using IotDsd.Inference.Tokenizers;

namespace IotDsd.Inference.Tests;

public sealed class ByteTokenizerTests
{
    [Fact]
    public void Encode_Utf8_OneTokenPerByte()
    {
        Assert.Equal([0x68, 0xC3, 0xA9], ByteTokenizer.Instance.Encode("hé"));
        Assert.Equal(256, ByteTokenizer.Instance.VocabSize);
    }

    [Fact]
    public void StreamDecoder_MultiByteCharsSplitAcrossTokens_HeldBackUntilComplete()
    {
        var text = "a€b😀c";
        var decoder = ByteTokenizer.Instance.CreateStreamDecoder();
        var pieces = ByteTokenizer.Instance.Encode(text).Select(decoder.Append).ToList();
        Assert.Equal(["a", "", "", "€", "b", "", "", "", "😀", "c"], pieces);
        Assert.Equal("", decoder.Flush());
        Assert.Equal(text, string.Concat(pieces));
    }

    [Fact]
    public void StreamDecoder_InvalidBytes_BecomeReplacementChar()
    {
        var decoder = ByteTokenizer.Instance.CreateStreamDecoder();
        var s = string.Concat(new[] { 0x41, 0xFF, 0x42, 0xC3, 0x43 }.Select(decoder.Append));
        Assert.Equal("A\uFFFDB\uFFFDC", s);
    }

    [Fact]
    public void StreamDecoder_FlushWithIncompleteSequence_EmitsReplacementAndResets()
    {
        var decoder = ByteTokenizer.Instance.CreateStreamDecoder();
        Assert.Equal("", decoder.Append(0xE2));
        Assert.Equal("", decoder.Append(0x82));
        Assert.Equal("\uFFFD", decoder.Flush());
        Assert.Equal("x", decoder.Append('x'));
    }

    [Fact]
    public void StreamDecoder_TokenOutOfRange_Throws()
    {
        var decoder = ByteTokenizer.Instance.CreateStreamDecoder();
        Assert.Throws<ArgumentOutOfRangeException>(() => decoder.Append(256));
    }
}
