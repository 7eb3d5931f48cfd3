using System.IO.Compression;
using FarmPlugins.Hosts.Imaging;
using FarmPlugins.TestSupport;
using Xunit;

namespace FarmPlugins.Hosts.Tests.Imaging;

public class TgaImageTests
{
    [Theory]
    [InlineData(3, false, true)]
    [InlineData(3, true, true)]
    [InlineData(4, true, true)]
    [InlineData(3, false, false)]
    [InlineData(4, true, false)]
    [InlineData(1, true, true)]
    [InlineData(1, false, false)]
    public void Decode_ReadsEveryLayout(int channels, bool runLength, bool topOrigin)
    {
        var image = WithBlackBand(PngImageTests.Pattern(13, 7, channels, 8));

        var decoded = TgaImage.Decode(Encode(image, runLength, topOrigin));

        Assert.Equal((13, 7, channels), (decoded.Width, decoded.Height, decoded.Channels));
        Assert.Equal(image.Data, decoded.Data);
    }

    [Theory]
    [InlineData(true, true)]
    [InlineData(false, true)]
    [InlineData(true, false)]
    public void DecodeWindow_EqualsTheCrop(bool runLength, bool topOrigin)
    {
        var image = WithBlackBand(PngImageTests.Pattern(200, 9, 3, 8));
        var bytes = Encode(image, runLength, topOrigin);

        Assert.Equal(image.Crop(130, 2, 70, 5).Data, TgaImage.DecodeWindow(bytes, 130, 2, 70, 5).Data);
        Assert.Equal(image.Crop(0, 0, 1, 1).Data, TgaImage.DecodeWindow(bytes, 0, 0, 1, 1).Data);
        Assert.Throws<ArgumentOutOfRangeException>(() => TgaImage.DecodeWindow(bytes, 150, 0, 51, 1));
    }

    [Fact]
    public void Decode_RefusesWhatItCannotRead_WithAReason()
    {
        var good = Encode(PngImageTests.Pattern(40, 40, 3, 8), runLength: true, topOrigin: true);

        var cut = Assert.Throws<InvalidDataException>(() => TgaImage.Decode(good.AsSpan(0, good.Length / 2)));
        Assert.Contains("cut short", cut.Message);
        var colourMapped = (byte[])good.Clone();
        colourMapped[1] = 1;
        colourMapped[2] = 9;
        Assert.Contains("colour map", Assert.Throws<InvalidDataException>(() => TgaImage.Decode(colourMapped)).Message);
        var sixteenBits = (byte[])good.Clone();
        sixteenBits[16] = 16;
        Assert.Contains("16 bits per pixel", Assert.Throws<InvalidDataException>(() => TgaImage.Decode(sixteenBits)).Message);
        Assert.Throws<InvalidDataException>(() => TgaImage.Decode(new byte[5]));
        Assert.False(TgaImage.IsTga("\x89PNG\r\n\x1a\n and more bytes than a header"u8));
    }

    [Fact]
    public async Task Merge_ReadsFullSizeTgaTiles_AndWritesTheFrameAsPng()
    {
        using var dir = new TempDir("mergetga");
        var whole = PngImageTests.Pattern(30, 12, 3, 8);
        await File.WriteAllBytesAsync(dir.Combine("t0.tga"), Encode(whole, runLength: true, topOrigin: true));
        await File.WriteAllBytesAsync(dir.Combine("t1.tga"), Encode(whole, runLength: false, topOrigin: false));

        var output = new StringWriter();
        var error = new StringWriter();
        var exit = await FarmPlugins.Tools.FarmToolsCommand.RunAsync(
            ["merge", "--out", "f.png", "--size", "30x12", "--full-size-tiles", "--tile", "t0.tga@0,0,30,5", "--tile", "t1.tga@0,5,30,7"],
            output, error, dir.Path);

        Assert.True(exit == 0, error.ToString());
        Assert.Equal(whole.Data, (await PngImage.LoadAsync(dir.Combine("f.png"))).Data);
    }

    [Fact]
    public async Task Merge_NamesAnUnreadableOrWrongSizedTgaTile()
    {
        using var dir = new TempDir("mergetgabad");
        var tile = Encode(PngImageTests.Pattern(30, 12, 3, 8), runLength: true, topOrigin: true);
        await File.WriteAllBytesAsync(dir.Combine("cut.tga"), tile[..40]);
        await File.WriteAllBytesAsync(dir.Combine("junk.tga"), "not an image at all, just words"u8.ToArray());
        await File.WriteAllBytesAsync(dir.Combine("small.tga"), tile);

        async Task<string> Merge(string path, string size = "30x12")
        {
            var error = new StringWriter();
            var exit = await FarmPlugins.Tools.FarmToolsCommand.RunAsync(
                ["merge", "--out", "f.png", "--size", size, "--full-size-tiles", "--tile", $"{path}@0,0,30,12"], new StringWriter(), error, dir.Path);
            Assert.Equal(1, exit);
            Assert.False(File.Exists(dir.Combine("f.png")));
            return error.ToString();
        }

        Assert.Contains("tile cut.tga is not a readable TGA: the TGA file is cut short", await Merge("cut.tga"));
        Assert.Contains("tile junk.tga is not a readable PNG or TGA image", await Merge("junk.tga"));
        Assert.Contains("tile small.tga is 30x12, expected 40x12", await Merge("small.tga", "40x12"));
    }

    [Fact]
    public void FastestEncode_RoundTrips()
    {
        var image = PngImageTests.Pattern(33, 17, 4, 8);

        Assert.Equal(image.Data, PngImage.Decode(image.Encode(CompressionLevel.Fastest)).Data);
    }

    /// <summary>Rows 2 and 3 and half of row 4 black: runs of one pixel, some crossing a row's end.</summary>
    private static PngImage WithBlackBand(PngImage image)
    {
        var rowBytes = image.Width * image.Channels;
        image.Data.AsSpan(2 * rowBytes, (2 * rowBytes) + (rowBytes / 2)).Clear();
        return image;
    }

    /// <summary>A TGA writer for the tests: BGR(A) or grey, raw or run-length (runs of repeated pixels and raw packets).</summary>
    internal static byte[] Encode(PngImage image, bool runLength, bool topOrigin)
    {
        var bpp = image.Channels;
        var output = new MemoryStream();
        var header = new byte[18];
        header[2] = (byte)((bpp == 1 ? 3 : 2) + (runLength ? 8 : 0));
        BitConverter.TryWriteBytes(header.AsSpan(12), (ushort)image.Width);
        BitConverter.TryWriteBytes(header.AsSpan(14), (ushort)image.Height);
        header[16] = (byte)(bpp * 8);
        header[17] = (byte)((topOrigin ? 0x20 : 0) | (bpp == 4 ? 8 : 0));
        output.Write(header);
        var pixels = new List<byte[]>();
        for (var row = 0; row < image.Height; row++)
        {
            var y = topOrigin ? row : image.Height - 1 - row;
            for (var x = 0; x < image.Width; x++)
            {
                var samples = Enumerable.Range(0, bpp).Select(c => (byte)image.Get(x, y, c)).ToArray();
                if (bpp >= 3)
                {
                    (samples[0], samples[2]) = (samples[2], samples[0]);
                }

                pixels.Add(samples);
            }
        }

        if (!runLength)
        {
            pixels.ForEach(p => output.Write(p));
            return output.ToArray();
        }

        // Alternate packet kinds so both are exercised, runs crossing rows included: a repeat packet of the same pixel
        // twice where two neighbours match, raw packets of up to 128 otherwise.
        var i = 0;
        while (i < pixels.Count)
        {
            if (i + 1 < pixels.Count && pixels[i].SequenceEqual(pixels[i + 1]))
            {
                var run = 1;
                while (i + run < pixels.Count && run < 128 && pixels[i + run].SequenceEqual(pixels[i]))
                {
                    run++;
                }

                output.WriteByte((byte)(0x80 | (run - 1)));
                output.Write(pixels[i]);
                i += run;
            }
            else
            {
                var count = Math.Min(128, pixels.Count - i);
                output.WriteByte((byte)(count - 1));
                for (var k = 0; k < count; k++)
                {
                    output.Write(pixels[i + k]);
                }

                i += count;
            }
        }

        return output.ToArray();
    }
}
